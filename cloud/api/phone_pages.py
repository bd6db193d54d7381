"""What the recipient's phone pages share: their language, their look, their words.

The scan-to-open page (`/s/...`) and a notice's pickup page (`/pickup/...`) are opened on a
phone, often inside WeChat's own browser: plain HTML, one inline style and script, no outside
resource, no cookie (WeChat's browser may drop third-party ones and the pages need none: a
session token lives in the page, or in this origin's own localStorage). Chinese comes first
(the site's language and the browser's decide), English one tap away; each page carries both
languages' words and switches without a reload.
"""

from __future__ import annotations

import html
import json
from typing import Any

LANGUAGES = ("zh-CN", "en")


def page_language(accept_language: str | None, site_language: str) -> str:
    """The page's first language: the browser's first choice of zh / en, else the site's.

    `Accept-Language: en-GB,en;q=0.9` at a Chinese site gets English (a visitor's phone);
    `zh-CN,zh;q=0.9,en;q=0.8` gets Chinese; a browser naming neither gets the site's language.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in ("zh", "en") and quality > 0:
            ranked.append((-quality, position, "zh-CN" if primary == "zh" else "en"))
    if ranked:
        return min(ranked)[2]
    return site_language if site_language in LANGUAGES else "zh-CN"


# Sized for 360-430 px phones: one column, 48 px targets, 17 px text, nothing wider than the
# screen (inputs included), success green and errors red, each with a word, not colour alone.
STYLE = """
*{box-sizing:border-box}
[hidden]{display:none !important}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:17px/1.45 system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC",
"Microsoft YaHei",sans-serif;background:#f2f4f7;color:#111}
main{max-width:430px;margin:0 auto;padding:12px 16px 32px}
header{display:flex;align-items:center;gap:8px;justify-content:space-between;margin:4px 0 12px}
h1{font-size:1.4rem;margin:0}
.lang{min-height:44px;min-width:72px;border:1px solid #9aa4b2;border-radius:10px;background:#fff;
font:inherit;font-weight:600;color:#111}
.card{background:#fff;border-radius:14px;padding:14px 16px;margin:0 0 12px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.where b{display:block;font-size:1.1rem}.where span{color:#4a5563}
label{display:block;font-weight:600;margin:0 0 6px}
input{display:block;width:100%;min-height:48px;font:inherit;font-size:1.2rem;padding:8px 12px;
border:2px solid #9aa4b2;border-radius:10px;background:#fff;color:#111}
input:focus{outline:3px solid #ffd21f;border-color:#111}
button.go,a.go{display:flex;align-items:center;justify-content:center;width:100%;
min-height:52px;margin:10px 0 0;border:0;border-radius:12px;font:inherit;font-size:1.1rem;
font-weight:700;text-decoration:none;background:#ffd21f;color:#111}
button.go:disabled{opacity:.5}
a.wechat{background:#07c160;color:#fff;margin:0 0 14px}
.msg{margin:12px 0 0;padding:10px 12px;border-radius:10px;font-weight:600}
.msg:empty{display:none}
.msg.ok{background:#e3f7ea;color:#0b6b2e;border:1px solid #0b6b2e}
.msg.bad{background:#fdecec;color:#a11;border:1px solid #a11}
.msg.info{background:#eef3fb;color:#1d3f72;border:1px solid #1d3f72}
ul.parcels{list-style:none;margin:0;padding:0}
.door{font-size:2.6rem;font-weight:800;line-height:1.1}
.code{font-size:2.2rem;font-weight:800;letter-spacing:.25rem;font-variant-numeric:tabular-nums}
.muted{color:#4a5563}
#qr svg{width:min(16rem,80vw);height:auto;display:block;margin:8px auto}
"""


def render_page(
    *,
    title_key: str,
    body: str,
    script: str,
    words: dict[str, dict[str, str]],
    language: str,
    data: dict[str, Any],
) -> str:
    """A whole page: `body` (with `data-t` keys), the words of both languages, `data` as JSON.

    The script gets `T(key, params)` (the word in the page's language), `LANG`, `setLang` and
    `DATA`; every element with `data-t` is filled in, and again after a switch.
    """
    missing = {k for k in words["zh-CN"]} ^ {k for k in words["en"]}
    if missing:
        raise ValueError(f"words missing in one language: {sorted(missing)}")
    payload = json.dumps({"words": words, "lang": language, "data": data}, ensure_ascii=False)
    payload = payload.replace("<", "\\u003c")  # no `</script>` can end the script early
    title = html.escape(words[language][title_key])
    return f"""<!doctype html>
<html lang="{language}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{STYLE}</style></head>
<body><main>
<header><h1 data-t="{title_key}"></h1>
<button id="lang" class="lang" type="button" data-t="switch"></button></header>
{body}
</main>
<script>
"use strict";
const PAGE = {payload};
let LANG = PAGE.lang;
const DATA = PAGE.data;
const $ = (id) => document.getElementById(id);
function T(key, params) {{
  const text = PAGE.words[LANG][key] ?? key;
  return text.replace(/\\{{(\\w+)\\}}/g,
    (_, n) => params && params[n] !== undefined ? params[n] : "");
}}
const redraws = [];
function setLang(lang) {{
  LANG = lang;
  document.documentElement.lang = lang;
  document.title = T("{title_key}");
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = T(el.dataset.t);
  for (const draw of redraws) draw();
}}
$("lang").addEventListener("click", () => setLang(LANG === "zh-CN" ? "en" : "zh-CN"));
// A message: a key and its parameters, so a language switch re-says it.
function say(id, tone, key, params) {{
  const el = $(id);
  const draw = () => {{
    el.className = "msg " + tone;
    el.textContent = key ? T(key, params) : "";
  }};
  el._draw = draw; draw();
}}
redraws.push(() => {{
  for (const el of document.querySelectorAll(".msg")) if (el._draw) el._draw();
}});
{script}
setLang(LANG);
</script></body></html>
"""


# Both pages' words for the API's refusals: every error a sentence, none a raw detail.
ERROR_WORDS = {
    "zh-CN": {
        "err_network": "网络不通，请检查网络后再试。",
        "err_phone": "手机号码无效，请输入 11 位手机号。",
        "err_code": "验证码不对或已过期，请核对短信，或重新获取验证码。",
        "err_expired": "二维码已过期，请重新扫描柜机屏幕上的二维码。",
        "err_cabinet": "找不到这个快递柜，请重新扫描柜机屏幕上的二维码。",
        "err_gone": "这个包裹已经取走或格口已打开，无需再开。",
        "err_busy": "请求太频繁，请 {minutes} 分钟后再试；也可以在柜机上输入取件码。",
        "err_other": "出错了，请稍后再试；也可以在柜机上输入取件码。",
    },
    "en": {
        "err_network": "No connection. Check your network and try again.",
        "err_phone": "That is not a valid mobile number.",
        "err_code": "That code is wrong or has expired. Check the SMS, or ask for a new code.",
        "err_expired": "This QR code has expired. Scan the QR on the cabinet's screen again.",
        "err_cabinet": "This cabinet is unknown. Scan the QR on the cabinet's screen again.",
        "err_gone": "This parcel was already taken or its door is already open.",
        "err_busy": "Too many tries. Try again in {minutes} min, or type your code at the cabinet.",
        "err_other": "Something went wrong. Try again later, or type your code at the cabinet.",
    },
}

# The script both pages use to call the API and turn a refusal into one of ERROR_WORDS.
CALL_SCRIPT = """
class Refused extends Error {
  constructor(key, params) { super(key); this.key = key; this.params = params || {}; }
}
async function call(path, body) {
  let r;
  try {
    r = await fetch(path, {method: "POST", credentials: "omit",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  } catch (err) { throw new Refused("err_network"); }
  const data = await r.json().catch(() => ({}));
  if (r.ok) return data;
  const minutes = Math.max(1, Math.ceil(Number(r.headers.get("Retry-After") || 600) / 60));
  const key = {401: "err_code", 403: "err_expired", 404: "err_cabinet", 409: "err_gone",
    422: "err_phone", 429: "err_busy"}[r.status] || "err_other";
  throw new Refused(key, {minutes});
}
// A session of scan-to-open, kept in this origin's storage so a notice's page can use it.
const SESSION_KEY = "lkr-scan:" + DATA.cab;
function keepSession(s) {
  try { localStorage.setItem(SESSION_KEY, JSON.stringify(s)); } catch (err) { /* private mode */ }
}
function storedSession() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
    return s && Date.parse(s.expires_at) > Date.now() ? s : null;
  } catch (err) { return null; }
}
"""


def place(cabinet: Any) -> dict[str, dict[str, str]]:
    """A cabinet's name and address in each language (English falls back to the Chinese)."""
    if cabinet is None:
        return {lang: {"name": "", "address": ""} for lang in LANGUAGES}
    return {
        "zh-CN": {"name": cabinet.name, "address": cabinet.address},
        "en": {
            "name": cabinet.name_en or cabinet.name,
            "address": cabinet.address_en or cabinet.address,
        },
    }


# The cabinet's name and address, in the page's language (`DATA.place`).
PLACE_HTML = '<p class="card where"><b id="where-name"></b><span id="where-address"></span></p>'
PLACE_SCRIPT = """
redraws.push(() => {
  $("where-name").textContent = DATA.place[LANG].name;
  $("where-address").textContent = DATA.place[LANG].address;
});
// A phone number on screen is masked like everywhere else: 138****5678.
function masked(phone) {
  const digits = phone.replace(/\\D/g, "");
  return digits.length > 7 ? digits.slice(0, 3) + "****" + digits.slice(-4) : "****";
}
"""


def words(*tables: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Merge word tables per language."""
    return {lang: {k: v for table in tables for k, v in table[lang].items()} for lang in LANGUAGES}
