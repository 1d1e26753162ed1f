"""A real SMTP server (aiosmtpd) for the email tests.

Each accepted mail is decoded with Python's email package and written as one JSON file
(`{seq:06}.json`, atomically) in --out: envelope, decoded headers, text and HTML bodies, attachments.
Modes: plain (default), --starttls (required before MAIL), --smtps (implicit TLS); --auth user:password
requires AUTH (PLAIN/LOGIN, over TLS only).
"""
import argparse
import email
import email.policy
import json
import os
import ssl
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--starttls", action="store_true")
ap.add_argument("--smtps", action="store_true")
ap.add_argument("--auth")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
n = [0]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        attachments = {}
        for part in msg.iter_attachments():
            data = part.get_payload(decode=True) or b""
            attachments[part.get_filename() or ""] = data.decode("utf-8", "replace")
        raw_headers = envelope.content.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "reply_to": str(msg["reply-to"] or ""),
            "message_id": str(msg["message-id"]),
            "date": str(msg["date"]),
            "raw_headers": raw_headers,
            "text": body.get_content() if body is not None else None,
            "html": html.get_content() if html is not None else None,
            "attachments": attachments,
            "tls": session.ssl is not None or (
                server.transport is not None and server.transport.get_extra_info("ssl_object") is not None),
            "auth": (session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None),
        }
        n[0] += 1
        tmp = os.path.join(a.out, f".{n[0]:06}.tmp")
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(a.out, f"{n[0]:06}.json"))
        return "250 2.0.0 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    user, _, pw = a.auth.partition(":")
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
          and auth_data.password == pw.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


kw = {}
if a.cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    if a.smtps:
        kw["ssl_context"] = ctx
    else:
        kw["tls_context"] = ctx
        kw["require_starttls"] = a.starttls
if a.auth:
    kw.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
c = Controller(Handler(), hostname="127.0.0.1", port=a.port, **kw)
c.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    c.stop()
