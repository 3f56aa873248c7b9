"""Multilingual words for the injection scan: graders, answers, scores, greetings.

A grader request in another language has the same shape as in English: it names
the answer being graded ("этому ответу", "この回答", "cette réponse") together with
a top score ("10 из 10", "満点", "la note maximale"), or it greets the grader
("Уважаемый оценщик", "採点者の方へ", "Beste beoordelaar"). The word lists below
(about 30 languages, written for this project) feed a few structural rules in
:mod:`qdsearch.judge.injection` instead of one pattern per language.

Words are stems, matched at a word start (anywhere for Chinese and Japanese, which
are written without spaces), in text normalised by
:func:`qdsearch.judge.textviews.plain` (accents and other combining marks
removed); the lists go through the same normalisation when compiled.
"""

from __future__ import annotations

import re

from qdsearch.judge.textviews import plain

__all__ = [
    "ANSWER",
    "GRADER",
    "GREETING",
    "IGNORE",
    "INSTRUCTIONS",
    "MAX_SCORE",
    "SCORE",
    "SUFFIX",
    "Gate",
    "compile_words",
]

#: Whoever grades the sample.
GRADER = """
juez jueza evaluador evaluadora calificador calificadora corrector correctora examinador examinadora revisor revisora
avaliador avaliadora juiz juiza
evaluateur evaluatrice correcteur correctrice examinateur examinatrice juge
bewerter bewerterin prufer pruferin gutachter gutachterin korrektor korrektorin
valutatore valutatrice correttore correttrice esaminatore esaminatrice giudice
beoordelaar beoordelaars jurylid examinator
bedomare granskare domare sensor bedommer
oceniajac egzaminator sedzia sedzio
hodnotitel hodnotiteli posuzovatel zkousejic rozhodci
degerlendirici hakem yargic puanlayici
penilai juri penguji
giam_khao nguoi_cham_diem nguoi_cham nguoi_danh_gia
оценщик оценщиц проверяющ экзаменатор судья судье судьи рецензент оценивающ
оцінювач перевіряюч екзаменатор суддя суддi рецензент
αξιολογητ κριτ βαθμολογητ εξεταστ
評委 评委 评分员 评分者 评审 裁判 评估者 阅卷 评阅 打分者 打分的
採点者 評価者 審査員 採点官 試験官 採点担当
채점자 평가자 심사위원 심사자 채점관
المقيم المقيمة المصحح المحكم الحكم مقيم مصحح
मूल्यांकनकर्ता परीक्षक निर्णायक जांचकर्ता
מעריך המעריך שופט השופט הבודק בודק
ارزیاب داور مصحح
"""

#: The answer (or text, sample) being graded: "this answer", "cette réponse".
ANSWER = """
respuesta contestacion resposta reponse antwort risposta antwoord svaret svar odpowiedz odpoved
cevap cevab yanit jawaban cau_tra_loi
ответ відповід απάντησ
回答 答案 回复 本回答 答え 解答 답변 응답 대답
اجابة الاجابة الرد جواب
उत्तर जवाब
תשובה התשובה پاسخ
"""

#: Score or grade nouns.
SCORE = """
puntuacion puntaje nota calificacion puntos pontuacao pontos note bewertung punktzahl punkte voto punteggio punti
cijfer punten betyg poang ocen punktow hodnoceni znamk bodu puan notu nilai skor diem
оценк балл оцінк бал βαθμ
分 评分 分数 点 点数 評価 满分 満点 점 점수 만점
درجة الدرجة علامة نقاط امتیاز نمره
अंक नंबर
ציון
"""

#: A top score: "maximum", "perfect", "full marks" and their like.
MAX_SCORE = """
maxima maximo maximale maximal maximum maximalni maksymaln massim hochst volle perfect perfecta perfecto parfaite
sempurna toi_da tam_puan en_yuksek najwyzsz nejvyssi hoogste hogsta hochstpunktzahl
максимальн наивысш высш высок найвищ
μεγιστ τελει
满分 最高分 满分10分 満点 最高点 만점 최고_점수
الكاملة الكامل الاعلى العليا
पूर्ण पूरा पूरे
מלא מקסימלי
کامل حداکثر
"""

#: Greetings and "to the attention of" words that open an address.
GREETING = """
querido querida estimado estimada senor senora hola atencion
caro cara gentile egregio egregia ciao attenzione
cher chere bonjour salut l'attention
lieber liebe geehrter geehrte hallo achtung
beste geachte hallo
kara kare hej
drogi droga szanowny szanowna
vazeny vazena mily
sayin degerli sevgili merhaba
kepada yth halo
gui kinh_gui
уважаем дорог привет внимание
шановн дорог
αγαπητ αξιοτιμ
尊敬的 亲爱的 致 敬爱的 親愛なる
عزيزي عزيزتي السيد الى
प्रिय आदरणीय
לכבוד שלום
جناب
"""

#: Honorific or "to" suffixes after the grader noun (Japanese, Korean).
SUFFIX = "様 さま さん 殿 の方へ の方 へ 님 께 분께 선생님"

#: "Ignore" in other languages.
IGNORE = """
ignora ignoren ignore ignorez ignoriere ignoriert ignorieren ignoreer negeer ignorera ignoruj ignorujte
bo_qua abaikan gormezden yoksay esqueca olvida oublie vergiss dimentica
игнорир забудь забудьте ігнор забудь
αγνοησ αγνοηστ ξεχασ
忽略 无视 無視 忽視 무시 잊어
تجاهل انس
अनदेखा
התעלם
نادیده
"""

#: "Instructions" or "rules" in other languages.
INSTRUCTIONS = """
instrucciones instrucoes instructions anweisungen instruktionen istruzioni consignes instructies
instructies instruktioner instrukcj polecen pokyny talimat instruksi petunjuk huong_dan chi_dan
regeln reglas regras regles regole regels regler zasady pravidla kurallar aturan quy_tac
инструкц указани правил інструкц вказівк правил
οδηγι κανον
指令 指示 说明 规则 規則 지시 지침 규칙
تعليمات التعليمات قواعد
निर्देश नियम
הוראות
دستورالعمل دستورات
"""

_NO_SPACES = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def compile_words(words: str) -> str:
    """A regex alternation of ``words`` (whitespace-separated; ``_`` joins the words
    of a several-word entry), normalised like the text it is matched against,
    longest first, each anchored at a word start unless it is Chinese or Japanese."""
    items = {plain(w.replace("_", " ")).lower() for w in words.split()}
    words_ = sorted(items, key=lambda w: (-len(w), w))
    spaced = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words_ if not _NO_SPACES.match(w))
    unspaced = "|".join(re.escape(w) for w in words_ if _NO_SPACES.match(w))
    return rf"(?:(?<!\w)(?:{spaced})" + (f"|{unspaced})" if unspaced else ")")


class Gate:
    """A cheap, permissive test that a text may hold one of ``words``: a word of the
    text starts like one of them (its first 2, 3 or 4 characters), or a Chinese or
    Japanese entry occurs in it. The regexes built by :func:`compile_words` are
    slow on long text; the scan runs them only behind a gate that opened."""

    def __init__(self, *word_lists: str) -> None:
        items = {plain(w.replace("_", " ")).lower() for words in word_lists for w in words.split()}
        self.prefixes = frozenset(w[:4] for w in items if not _NO_SPACES.match(w))
        self.unspaced = tuple(sorted(w for w in items if _NO_SPACES.match(w)))

    def opens(self, tokens: set[str], text: str) -> bool:
        """``tokens``: the lower-cased words of ``text`` (``re.findall(r"\\w+", text.lower())``)."""
        p = self.prefixes
        return any(t[:4] in p or t[:3] in p or t[:2] in p for t in tokens) or any(w in text for w in self.unspaced)
