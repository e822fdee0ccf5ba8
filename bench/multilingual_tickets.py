"""Hand-written multilingual support tickets for bench/multilingual.py: filler templates
(customer and agent) and one planted fact per language, with three queries each (a
paraphrase in the ticket's language, keywords, and English). Written for session 29's user
test of a multilingual support team; not derived from LoCoMo, and not the sentences the
per-script token costs (`memory.tokens._SCRIPT_TENTHS`) were measured on.
"""
# ruff: noqa: E501
from __future__ import annotations

import random
from typing import Any

L: dict[str, dict[str, Any]] = {}
L["de"] = dict(
 user=["Guten Tag, ich warte immer noch auf eine Antwort zu Bestellung {n}.",
       "Können Sie bitte nachsehen, ob die Zahlung für Rechnung {n} angekommen ist?",
       "Das Paket wurde laut Sendungsverfolgung am {d}. zugestellt, aber ich habe nichts bekommen.",
       "Ich habe gestern {n} Euro überwiesen, bitte bestätigen Sie den Eingang.",
       "Der Kundendienst hat mir versprochen, dass sich jemand bis Freitag meldet.",
       "Wie lange dauert die Bearbeitung einer Reklamation normalerweise?",
       "Mein Konto zeigt immer noch den alten Tarif an, obwohl ich gewechselt habe.",
       "Vielen Dank, ich warte dann auf Ihre E-Mail."],
 agent=["Vielen Dank für Ihre Geduld, ich prüfe den Vorgang {n} sofort.",
        "Ich habe die Kollegen aus der Buchhaltung informiert, Ticketnummer {n}.",
        "Die Sendung befindet sich laut DHL im Verteilzentrum, Stand {d}. des Monats.",
        "Ich habe eine Gutschrift über {n} Euro veranlasst.",
        "Leider kann ich die Adresse erst nach Ihrer Bestätigung ändern.",
        "Bitte schicken Sie uns ein Foto des Etiketts."],
 fact="Übrigens: Die Ersatzlieferung soll an meine Schwester in Gelsenkirchen gehen, Hausnummer 17b.",
 q=dict(para="An welche Adresse soll die Ersatzlieferung gehen?", kw="Gelsenkirchen Schwester",
        en="Where should the replacement delivery be sent?"),
 ans="Gelsenkirchen")
L["fr"] = dict(
 user=["Bonjour, je n'ai toujours pas reçu ma commande {n}.",
       "Pouvez-vous vérifier si le paiement de la facture {n} a bien été reçu ?",
       "Le suivi indique une livraison le {d}, mais je n'ai rien reçu.",
       "J'ai déjà envoyé {n} euros par virement hier.",
       "On m'a promis un rappel avant vendredi, personne n'a appelé.",
       "Combien de temps faut-il pour traiter une réclamation ?",
       "Mon abonnement affiche toujours l'ancien tarif.",
       "Merci, j'attends votre courriel."],
 agent=["Merci pour votre patience, je vérifie le dossier {n} tout de suite.",
        "J'ai transmis votre demande au service comptable, ticket {n}.",
        "Selon Colissimo, le colis est au centre de tri depuis le {d}.",
        "J'ai lancé un avoir de {n} euros sur votre compte.",
        "Je ne peux modifier l'adresse qu'après votre confirmation.",
        "Merci de nous envoyer une photo de l'étiquette."],
 fact="Au fait, je préfère être contacté uniquement le jeudi matin, car je travaille de nuit à l'hôpital.",
 q=dict(para="Quand dois-je appeler le client ?", kw="jeudi matin hôpital",
        en="When does the customer prefer to be contacted?"),
 ans="jeudi")
L["es"] = dict(
 user=["Hola, todavía no he recibido mi pedido {n}.",
       "¿Pueden comprobar si llegó el pago de la factura {n}?",
       "El seguimiento dice que se entregó el día {d}, pero no tengo nada.",
       "Ayer transferí {n} euros, confirmen por favor.",
       "Me prometieron una llamada antes del viernes.",
       "¿Cuánto tarda normalmente una reclamación?",
       "Mi cuenta sigue mostrando la tarifa antigua.",
       "Gracias, quedo a la espera de su correo."],
 agent=["Gracias por su paciencia, reviso el caso {n} ahora mismo.",
        "He informado al departamento de contabilidad, ticket {n}.",
        "Según Correos, el envío está en el centro de distribución desde el {d}.",
        "He emitido un abono de {n} euros.",
        "Solo puedo cambiar la dirección con su confirmación.",
        "Envíenos una foto de la etiqueta, por favor."],
 fact="Por cierto, el paquete llegó con la pantalla rota y la caja estaba completamente mojada.",
 q=dict(para="¿En qué estado llegó el paquete?", kw="pantalla rota",
        en="What was damaged when the package arrived?"),
 ans="pantalla rota")
L["ru"] = dict(
 user=["Здравствуйте, я до сих пор не получил заказ {n}.",
       "Проверьте, пожалуйста, поступила ли оплата по счёту {n}.",
       "По отслеживанию посылка доставлена {d} числа, но у меня её нет.",
       "Вчера я перевёл {n} рублей, подтвердите получение.",
       "Мне обещали перезвонить до пятницы, но никто не позвонил.",
       "Сколько обычно рассматривается претензия?",
       "В личном кабинете до сих пор старый тариф.",
       "Спасибо, жду письма."],
 agent=["Спасибо за терпение, сейчас проверю обращение {n}.",
        "Я передал вопрос в бухгалтерию, номер заявки {n}.",
        "По данным СДЭК, отправление находится на сортировке с {d} числа.",
        "Я оформил возврат {n} рублей на вашу карту.",
        "Изменить адрес я могу только после вашего подтверждения.",
        "Пришлите, пожалуйста, фото этикетки."],
 fact="Кстати, курьер оставил коробку у соседа из квартиры 42, а не у меня, и сосед уехал в отпуск.",
 q=dict(para="У кого курьер оставил коробку?", kw="сосед квартира 42",
        en="Who did the courier leave the box with?"),
 ans="квартиры 42")
L["ar"] = dict(
 user=["مرحبا، لم أستلم طلبي رقم {n} حتى الآن.",
       "هل يمكنكم التحقق من وصول دفعة الفاتورة {n}؟",
       "التتبع يقول إن الشحنة سلمت يوم {d} لكنني لم أستلم شيئا.",
       "حولت أمس مبلغ {n} ريال، أرجو التأكيد.",
       "وعدوني بالاتصال قبل يوم الجمعة ولم يتصل أحد.",
       "كم يستغرق معالجة الشكوى عادة؟",
       "حسابي ما زال يعرض الباقة القديمة.",
       "شكرا، سأنتظر رسالتكم."],
 agent=["شكرا لصبرك، سأراجع الطلب {n} فورا.",
        "أبلغت قسم المحاسبة، رقم التذكرة {n}.",
        "حسب أرامكس، الشحنة في مركز الفرز منذ يوم {d}.",
        "أصدرت رصيدا دائنا بقيمة {n} ريال.",
        "لا يمكنني تغيير العنوان إلا بعد تأكيدك.",
        "أرسل لنا صورة الملصق من فضلك."],
 fact="بالمناسبة، تم خصم المبلغ مرتين من بطاقتي الائتمانية يوم الثلاثاء الماضي.",
 q=dict(para="متى تم خصم المبلغ مرتين؟", kw="بطاقتي الائتمانية مرتين",
        en="When was the credit card charged twice?"),
 ans="مرتين")
L["he"] = dict(
 user=["שלום, עדיין לא קיבלתי את הזמנה {n}.",
       "אפשר לבדוק אם התשלום על חשבונית {n} התקבל?",
       "לפי המעקב החבילה נמסרה ב-{d} לחודש אבל לא קיבלתי כלום.",
       "העברתי אתמול {n} שקלים, נא לאשר.",
       "הבטיחו לי שיחזרו אליי עד יום שישי.",
       "כמה זמן לוקח לטפל בתלונה?",
       "החשבון שלי עדיין מראה את המסלול הישן.",
       "תודה, אחכה למייל."],
 agent=["תודה על הסבלנות, אני בודק את פנייה {n} עכשיו.",
        "העברתי את הנושא להנהלת החשבונות, מספר קריאה {n}.",
        "לפי דואר ישראל, המשלוח במרכז המיון מאז ה-{d}.",
        "הנפקתי זיכוי של {n} שקלים.",
        "אני יכול לשנות כתובת רק אחרי אישור שלך.",
        "נא לשלוח צילום של המדבקה."],
 fact="אגב, הסיסמה שלי לא עובדת מאז שעברתי לטלפון חדש של סמסונג.",
 q=dict(para="ממתי הסיסמה לא עובדת?", kw="סמסונג סיסמה",
        en="Why did the password stop working?"),
 ans="סמסונג")
L["hi"] = dict(
 user=["नमस्ते, मुझे अभी तक ऑर्डर {n} नहीं मिला है।",
       "क्या आप देख सकते हैं कि बिल {n} का भुगतान पहुंचा या नहीं?",
       "ट्रैकिंग के अनुसार पार्सल {d} तारीख को पहुंच गया, पर मुझे कुछ नहीं मिला।",
       "मैंने कल {n} रुपये भेजे हैं, कृपया पुष्टि करें।",
       "मुझसे शुक्रवार तक कॉल करने का वादा किया गया था।",
       "शिकायत निपटाने में आमतौर पर कितना समय लगता है?",
       "मेरे खाते में अभी भी पुराना प्लान दिख रहा है।",
       "धन्यवाद, मैं आपके ईमेल का इंतज़ार करूंगा।"],
 agent=["धैर्य के लिए धन्यवाद, मैं मामला {n} अभी देखता हूं।",
        "मैंने लेखा विभाग को सूचित कर दिया है, टिकट {n}।",
        "डेलीवरी के अनुसार शिपमेंट {d} तारीख से छंटाई केंद्र में है।",
        "मैंने {n} रुपये का क्रेडिट जारी किया है।",
        "आपकी पुष्टि के बाद ही मैं पता बदल सकता हूं।",
        "कृपया लेबल की फोटो भेजें।"],
 fact="वैसे, मेरा पार्सल जयपुर के पुराने पते पर भेज दिया गया था।",
 q=dict(para="पार्सल किस पते पर भेजा गया था?", kw="जयपुर पुराने पते",
        en="Which address was the parcel sent to?"),
 ans="जयपुर")
L["ja"] = dict(
 user=["こんにちは、注文{n}がまだ届いていません。",
       "請求書{n}の支払いが届いているか確認していただけますか。",
       "追跡では{d}日に配達済みになっていますが、何も受け取っていません。",
       "昨日{n}円を振り込みましたので、確認をお願いします。",
       "金曜日までに折り返し電話をいただけると聞きました。",
       "苦情の処理には通常どのくらいかかりますか。",
       "アカウントにはまだ古いプランが表示されています。",
       "ありがとうございます、メールをお待ちしています。"],
 agent=["お待たせして申し訳ありません、案件{n}をすぐに確認します。",
        "経理部に連絡しました。チケット番号は{n}です。",
        "ヤマト運輸によると、荷物は{d}日から仕分けセンターにあります。",
        "{n}円のクレジットを発行しました。",
        "住所の変更はお客様の確認後にのみ可能です。",
        "ラベルの写真を送っていただけますか。"],
 fact="ちなみに、返品の荷物は佐川急便で金曜日に発送しました。",
 q=dict(para="返品はどの配送業者で送りましたか？", kw="佐川急便",
        en="Which carrier was the return shipped with?"),
 ans="佐川急便")
L["zh"] = dict(
 user=["你好，我的订单{n}还没有收到。",
       "能帮我查一下发票{n}的付款到账了吗？",
       "物流显示{d}号已经签收，但我什么都没收到。",
       "我昨天转账了{n}元，请确认一下。",
       "客服答应我周五之前回电话，但是没有人联系我。",
       "投诉一般需要多长时间处理？",
       "我的账户还是显示旧的套餐。",
       "谢谢，我等你们的邮件。"],
 agent=["感谢您的耐心，我马上查看工单{n}。",
        "我已经通知了财务部门，工单号{n}。",
        "根据顺丰的信息，包裹从{d}号起在分拣中心。",
        "我已经为您申请了{n}元的退款。",
        "只有在您确认之后我才能修改地址。",
        "请发一张标签的照片给我们。"],
 fact="顺便说一下，我的发票抬头应该是上海星辰科技有限公司。",
 q=dict(para="发票抬头应该写什么？", kw="上海星辰科技",
        en="What company name should be on the invoice?"),
 ans="星辰科技")
L["ko"] = dict(
 user=["안녕하세요, 주문 {n}을 아직 받지 못했습니다.",
       "청구서 {n}의 결제가 들어왔는지 확인해 주실 수 있나요?",
       "배송 조회에는 {d}일에 배달 완료로 나오는데 아무것도 못 받았어요.",
       "어제 {n}원을 송금했으니 확인 부탁드립니다.",
       "금요일까지 연락 준다고 했는데 아무도 연락이 없어요.",
       "불만 처리는 보통 얼마나 걸리나요?",
       "제 계정에는 아직 예전 요금제가 보입니다.",
       "감사합니다, 이메일 기다리겠습니다."],
 agent=["기다려 주셔서 감사합니다, 건 {n}을 바로 확인하겠습니다.",
        "회계팀에 전달했습니다, 티켓 번호는 {n}입니다.",
        "CJ대한통운에 따르면 물건은 {d}일부터 분류 센터에 있습니다.",
        "{n}원의 크레딧을 발행했습니다.",
        "주소 변경은 고객님의 확인 후에만 가능합니다.",
        "라벨 사진을 보내 주시겠어요?"],
 fact="참고로, 환불은 신한은행 계좌로 받고 싶습니다.",
 q=dict(para="환불은 어느 은행으로 받고 싶어요?", kw="신한은행",
        en="Which bank should the refund go to?"),
 ans="신한은행")
L["ja_trace"] = dict(
 user=L["ja"]["user"], agent=L["ja"]["agent"],
 fact=("本番環境で毎晩このエラーが出ます。注文番号RF-77310の処理中です:\n"
       "Traceback (most recent call last):\n  File \"/srv/app/billing/refund.py\", line 212, in settle_refund\n"
       "    cur.execute(SQL_LOCK_ORDER, (order_id,))\npsycopg.errors.DeadlockDetected: deadlock detected\n"
       "DETAIL:  Process 4121 waits for ShareLock on transaction 99812; blocked by process 4133.\n"
       "よろしくお願いします。"),
 q=dict(para="本番環境で出ているエラーは何ですか？", kw="DeadlockDetected refund.py",
        en="What error happens in production during the refund?"),
 ans="DeadlockDetected")
L["emoji"] = dict(
 user=["hey 👋 any news on order {n}?? 🙏", "lol ok 😂😂 thx", "still nothing 😩📦 day {d} of waiting",
       "🙄🙄🙄", "can u check pls 🥺👉👈", "👍👍 cool", "my cat 🐱 says hi lol"],
 agent=["Hi! 😊 Checking order {n} now 🔍", "Sorry for the wait 🙇 ticket {n}", "📦 is at the depot since day {d} 🚚",
        "Refund of {n} 💶 issued ✅", "Could you send a 📸 of the label?"],
 fact="omg 😱😱 the courier left my parcel 📦 at the house with the blue door 🚪💙 at the end of the street, not mine 🏠!!!",
 q=dict(para="where did the courier leave the parcel", kw="blue door", en="Which house got the parcel?"),
 ans="blue door")
L["name"] = dict(
 user=L["de"]["user"], agent=L["de"]["agent"],
 fact="Bitte stellen Sie die korrigierte Rechnung auf Zoë Müller-Ødegård aus, nicht auf mich.",
 q=dict(para="Auf wen soll die korrigierte Rechnung ausgestellt werden?", kw="Zoë Müller-Ødegård",
        en="Who should the corrected invoice be made out to?"),
 ans="Ødegård")



def conversation(lang: str, n_turns: int = 320, fact_at: int = 8, seed: int = 0
                 ) -> list[dict[str, str]]:
    """n_turns messages alternating user/assistant; the planted fact is message fact_at (user)."""
    rnd = random.Random(f"{lang}{seed}")
    spec = L[lang]
    msgs = []
    for i in range(n_turns):
        role = "user" if i % 2 == 0 else "assistant"
        if i == fact_at:
            text = spec["fact"]
        else:
            pool = spec["user"] if role == "user" else spec["agent"]
            # two sentences a turn
            text = " ".join(t.format(n=rnd.randint(10000, 99999), d=rnd.randint(1, 28))
                            for t in rnd.sample(pool, 2))
        msgs.append({"id": f"{lang}-{i:04d}", "role": role, "content": text,
                     "created_at": f"2026-0{1 + i // 120}-{1 + (i // 5) % 27:02d}T{8 + i % 10:02d}:00:00Z"})
    return msgs
