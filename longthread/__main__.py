from longthread.cli import app

app()
