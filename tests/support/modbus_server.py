"""Real Modbus peer for the tests: pymodbus TCP or RTU server with a register map from a JSON file.

map.json: {"units": {"1": {"hr": [..], "ir": [..], "co": [..], "di": [..]}}}   (index = 0-based address)
A unit whose file `<mute_dir>/mute-<unit>` exists stops answering (a silent device on the line) until the file
is removed. Unknown units never answer (ignore_missing_devices), as on a real bus.
"""
import argparse
import asyncio
import json
import logging
import os

from pymodbus import FramerType
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.simulator import simcore

ap = argparse.ArgumentParser()
ap.add_argument("--map", required=True)
ap.add_argument("--tcp", type=int)
ap.add_argument("--rtu")
ap.add_argument("--baud", type=int, default=19200)
ap.add_argument("--mute-dir")
a = ap.parse_args()
logging.basicConfig(level=logging.ERROR)


def block(values):
    # Legacy blocks keep a +1 offset: a block starting at 1 serves protocol address 0.
    return ModbusSequentialDataBlock(1, list(values) + [0] * 8)


with open(a.map) as f:
    spec = json.load(f)
devices = {}
for unit, t in spec["units"].items():
    devices[int(unit)] = ModbusDeviceContext(
        hr=block(t.get("hr", [0])), ir=block(t.get("ir", [0])), co=block(t.get("co", [0])), di=block(t.get("di", [0]))
    )
context = ModbusServerContext(devices=devices, single=False)


def is_muted(unit):
    return bool(a.mute_dir) and os.path.exists(os.path.join(a.mute_dir, f"mute-{unit}"))


# Unknown or muted units stay silent (as on a real bus) instead of answering with exception 4.
_orig_get_device = simcore.SimCore._SimCore__get_device


def _get_device(self, device_id):
    if device_id not in self.devices or is_muted(device_id):
        raise NoSuchIdException(f"unit {device_id} is silent")
    return _orig_get_device(self, device_id)


simcore.SimCore._SimCore__get_device = _get_device


async def muter():
    while True:
        await asyncio.sleep(3600)


async def main():
    asyncio.get_running_loop().create_task(muter())
    if a.tcp:
        await StartAsyncTcpServer(context=context, address=("127.0.0.1", a.tcp), ignore_missing_devices=True)
    else:
        await StartAsyncSerialServer(
            context=context, framer=FramerType.RTU, port=a.rtu, baudrate=a.baud, ignore_missing_devices=True
        )


asyncio.run(main())
