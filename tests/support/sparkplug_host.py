"""A Sparkplug B host for the tests, decoding with pysparkplug (an independent implementation of the
specification): every message under spBv1.0/# is decoded (DDATA against the device's DBIRTH, so aliases resolve as a
host resolves them) and appended to --out as one JSON line. A file --rebirth, when it appears, makes it publish
NCMD `Node Control/Rebirth` to the node and removes the file.

  python sparkplug_host.py --port N --out PATH --group G --node N [--rebirth PATH]
"""

import argparse
import json
import os
import threading
import time

import paho.mqtt.client as mqtt
import pysparkplug as psp

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--group", required=True)
ap.add_argument("--node", required=True)
ap.add_argument("--rebirth")
ap.add_argument("--primary", help="act as this primary host application: STATE online (retained) on every connect")
ap.add_argument("--offline", help="a file: while it exists the primary host says it is offline")
a = ap.parse_args()

births = {}
lock = threading.Lock()


def dump(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return v


def on_message(client, userdata, msg):
    if "/STATE/" in msg.topic:
        return
    rec = {"topic": msg.topic, "raw": msg.payload.hex()}
    try:
        parts = msg.topic.split("/")
        kind = parts[2]
        rec["type"] = kind
        device = parts[4] if len(parts) > 4 else None
        rec["device"] = device
        birth = births.get(device) if kind in ("DDATA", "NDATA") else None
        m = psp.Message.from_mqtt_message(msg, birth=birth)
        p = m.payload
        if kind in ("NBIRTH", "DBIRTH"):
            births[device if kind == "DBIRTH" else None] = p
        rec["seq"] = getattr(p, "seq", None)
        if hasattr(p, "metrics"):
            metrics = p.metrics
        elif hasattr(p, "bd_seq_metric"):
            metrics = [p.bd_seq_metric]
        else:
            metrics = []
        rec["metrics"] = [
            {
                "name": x.name,
                "alias": x.alias,
                "datatype": int(x.datatype),
                "value": dump(x.value),
                "historical": bool(x.is_historical),
                "timestamp": x.timestamp,
            }
            for x in metrics
        ]
    except Exception as e:  # a payload the specification's decoder refuses is a finding, recorded as such
        rec["error"] = repr(e)
    with lock, open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")


c = mqtt.Client(client_id="test-host")  # paho-mqtt 1.6 (what pysparkplug 0.6 requires)
c.on_message = on_message


def state(online):
    return json.dumps({"online": online, "timestamp": int(time.time() * 1000)})


def on_connect(cl, userdata, flags, rc):
    cl.subscribe("spBv1.0/#", qos=1)
    if a.primary:
        cl.publish(f"spBv1.0/STATE/{a.primary}", state(True), qos=1, retain=True)


c.on_connect = on_connect
if a.primary:
    c.will_set(f"spBv1.0/STATE/{a.primary}", state(False), qos=1, retain=True)
c.reconnect_delay_set(min_delay=0.2, max_delay=1)


def on_subscribe(client, userdata, mid, granted_qos):
    with lock, open(a.out, "a") as f:
        f.write(json.dumps({"type": "subscribed"}) + "\n")


c.on_subscribe = on_subscribe
c.connect("127.0.0.1", a.port)
c.loop_start()
said_offline = False
while True:
    if a.primary and a.offline:
        now_offline = os.path.exists(a.offline)
        if now_offline != said_offline:
            c.publish(f"spBv1.0/STATE/{a.primary}", state(not now_offline), qos=1, retain=True)
            said_offline = now_offline
    if a.rebirth and os.path.exists(a.rebirth):
        os.unlink(a.rebirth)
        payload = psp.NCmd(
            timestamp=psp.get_current_timestamp(),
            metrics=(psp.Metric(timestamp=psp.get_current_timestamp(), name="Node Control/Rebirth",
                                datatype=psp.DataType.BOOLEAN, value=True),),
        )
        c.publish(f"spBv1.0/{a.group}/NCMD/{a.node}", payload.encode(), qos=0)
    time.sleep(0.05)
