from longthread.cli import main

main()
