"""What a notification says: one bilingual (Chinese / English) text per alert a duty officer can act on.

Each alert's text says what was breached (the rule's indicator, the value against its threshold, the
plan line or standard clause behind it), where (the site's name, coordinates and a map link, from the
site registry), since when (the first breaching window, local time) and what the acknowledge link
does. The message body also carries the alerts as data (each with its idempotency key and link), so
machines never parse the text. Channels (alerts/channels.py) only deliver what `render` returns.
"""
from __future__ import annotations

import datetime as dt
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from schemas.sites import load_sites

if TYPE_CHECKING:
    from alerts.channels import Delivery

LOCAL = dt.timezone(dt.timedelta(hours=8))
KIND_ZH = {"firing": "告警", "reminder": "提醒", "escalated": "升级", "resolved": "解除", "acknowledged": "已确认"}
ACK_TOPIC = "ack/alerts"   # field apps publish {"by": ..., "comment": ...} to ack/alerts/<id>
LINK_EN = ("opens a form; sending it records who acknowledged (with a comment) and stops the reminders. "
           "It does not close the alert: that happens when the readings recover")
LINK_ZH = "打开确认页面，提交后记录确认人及备注并停止提醒；告警不因确认而关闭，监测值恢复后自动解除"


def when(ns: int) -> str:
    """Event time (UTC ns) as local time."""
    return dt.datetime.fromtimestamp(ns / 1e9, LOCAL).strftime("%Y-%m-%d %H:%M UTC+8")


@lru_cache(maxsize=1)
def _places() -> dict[tuple[str, str], Any]:
    return {(s.domain, s.id): s for s in load_sites()}


def place(domain: str, site: str) -> tuple[str, str]:
    """(English, Chinese) description of where: the registry's names, coordinates and a map link; the
    bare site id when the registry does not know it."""
    s = _places().get((domain, site))
    if s is None:
        return f"site {site}", f"站点 {site}"
    at = f"{s.lat:.3f}°N {s.lon:.3f}°E"
    link = f"https://www.openstreetmap.org/?mlat={s.lat:.4f}&mlon={s.lon:.4f}#map=15/{s.lat:.4f}/{s.lon:.4f}"
    return f"{s.name} ({site}; {at}; map {link})", f"{s.name_zh}（{site}；{at}；地图 {link}）"


def _texts(kind: str, a: dict[str, Any]) -> tuple[str, str]:
    """The English and the Chinese text of one alert of a message."""
    where_en, where_zh = place(a["domain"], a["site"])
    missed_en = missed_zh = ""
    if kind == "reminder" and a.get("missed_reminders"):
        missed_en = f" ({a['missed_reminders']} earlier reminders missed while the router was down)"
        missed_zh = f"（路由停机期间漏发 {a['missed_reminders']} 次提醒）"
    entity = "" if a["entity"] == a["site"] else f", entity {a['entity']}"
    link_en = link_zh = ""
    if a.get("ack_url"):
        link_en = f" Acknowledge: {a['ack_url']} - the link {LINK_EN}."
        link_zh = f"确认链接：{a['ack_url']}（{LINK_ZH}）。"
    en = (f"[{kind.upper()}] {a['title_en']}: rule {a['rule']}{entity}, value {a['value']:g} against threshold "
          f"{a['threshold']:g}, severity {a['severity']}. Where: {where_en}. Since {when(a['since'])} (latest window "
          f"{when(a['last_ts'])}){missed_en}. Basis: {a['target']}. Alert {a['id']}.{link_en} Or: smartcity alerts "
          f"ack {a['id']} --by NAME, or publish to {ACK_TOPIC}/{a['id']}.")
    zh = (f"【{KIND_ZH.get(kind, kind)}】{a['title_zh']}：规则 {a['rule']}，监测值 {a['value']:g}（阈值 "
          f"{a['threshold']:g}），级别 {a['severity']}。地点：{where_zh}。自 {when(a['since'])} 起（最新时段 "
          f"{when(a['last_ts'])}）{missed_zh}。依据：{a['target']}。告警编号 {a['id']}。{link_zh}"
          f"也可执行 smartcity alerts ack {a['id']} --by 姓名，或发布到 {ACK_TOPIC}/{a['id']}。")
    return en, zh


def render(delivery: "Delivery", links: dict[str, str] | None = None) -> dict[str, Any]:
    """The message body: the alerts (each with its idempotency key and acknowledge link) and one English
    and one Chinese text."""
    en, zh, alerts = [], [], []
    for n in delivery.notes:
        a = {**n.alert, "idempotency_key": n.key}
        if links and a["id"] in links:
            a["ack_url"] = links[a["id"]]
        alerts.append(a)
        text_en, text_zh = _texts(delivery.kind, a)
        en.append(text_en)
        zh.append(text_zh)
    return {"kind": delivery.kind, "idempotency_key": delivery.key, "alerts": alerts, "text_en": "\n".join(en),
            "text_zh": "\n".join(zh), "sent_at": time.time()}
