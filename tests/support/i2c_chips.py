"""Chip models for the i2c-dev tests, written from the manufacturers' datasheets (not from watchpost's simulation),
served to tests/support/i2c_shim.c over a Unix socket.

Each model keeps the chip's register map, reset values, auto-increment, conversion timing and status bits:
  * BME280 (Bosch BST-BME280-DS002): chip id 0x60 at 0xD0, forced mode started by writing ctrl_meas, status.measuring
    (0xF3 bit 3) set for the conversion, data registers updated only at its end, reset values 0x80000/0x8000,
    measurement time per §9.1 (typical, or maximum with --slow), the IIR filter of §3.4.4 on temperature and
    pressure, calibration in 0x88–0xA1 and 0xE1–0xE7.
  * SHT4x (Sensirion SHT4x datasheet): 0xFD measures T and RH with high repeatability in ≤ 8.3 ms; a read header
    before then is not acknowledged; 6 bytes with CRC-8 (0x31, init 0xFF).
  * TMP117 (TI SNOSD82): temperature 7.8125 m°C/LSB, reset value 0x8000 (−256 °C) until the first conversion (15.5 ms
    after power-up with the default averaging of 8: 125 ms), Data_Ready in configuration bit 13, device id 0x0117.
  * INA219 (TI SBOS448): configuration reset 0x399F (continuous, 12-bit, 532 µs per conversion), shunt voltage
    10 µV/LSB, bus voltage 4 mV/LSB in bits 15:3 with CNVR (bit 1) set when a conversion completes and cleared by
    reading the power register; current and power are computed only by a conversion completed after calibration.
  * ADS1115 (TI SBAS444): configuration reset 0x8583, single-shot started by OS=1, OS reads 0 while converting
    (1/DR: 7.8 ms at the default 128 SPS), PGA full-scale ±6.144…±0.256 V, codes clamped at 0x7FFF/0x8000.

The truth of every conversion (its raw codes and the datasheet's compensated values) is appended to --truth as JSON
lines, so a test compares what watchpost stored with what the chip measured.

  python3 i2c_chips.py --socket PATH --truth PATH [--slow] [--absent 0x45 ...]
"""

import argparse
import json
import os
import socket
import struct
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--socket", required=True)
ap.add_argument("--truth", required=True)
ap.add_argument("--slow", action="store_true", help="BME280 at the datasheet's maximum conversion time")
ap.add_argument("--absent", nargs="*", default=[])
ap.add_argument("--ctl", help="a directory: a file brownout-76 resets the chip at 0x76 once; hang-76 holds the bus in "
                "the chip's next transfer while it exists (SDA held low)")
a = ap.parse_args()

ENXIO, EREMOTEIO = 6, 121
lock = threading.Lock()


def truth(**kw):
    with open(a.truth, "a") as f:
        f.write(json.dumps(kw) + "\n")


class Nack(Exception):
    def __init__(self, errno=EREMOTEIO):
        self.errno = errno


def now():
    return time.monotonic()


class Bme280:
    # Calibration of Bosch's worked example (temperature, pressure) and typical humidity trimming values.
    T = (27504, 26435, -1000)
    P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
    H = (75, 362, 0, 313, 50, 30)
    # Raw codes of successive conversions: each forced conversion measures the next one.
    RAW = [(519888, 415148, 30000), (520888, 415648, 31000), (518888, 414648, 29000)]

    def __init__(self):
        self.regs = bytearray(256)
        self.regs[0xD0] = 0x60
        t1, t2, t3 = self.T
        struct.pack_into("<Hhh", self.regs, 0x88, t1, t2, t3)
        struct.pack_into("<Hhhhhhhhh", self.regs, 0x8E, *self.P)
        h1, h2, h3, h4, h5, h6 = self.H
        self.regs[0xA1] = h1
        struct.pack_into("<hB", self.regs, 0xE1, h2, h3)
        self.regs[0xE4] = (h4 >> 4) & 0xFF
        self.regs[0xE5] = (h4 & 0x0F) | ((h5 & 0x0F) << 4)
        self.regs[0xE6] = (h5 >> 4) & 0xFF
        struct.pack_into("<b", self.regs, 0xE7, h6)
        self.reset()
        self.n = 0
        self.filtered = None

    def reset(self):
        for r in (0xF2, 0xF3, 0xF4, 0xF5):
            self.regs[r] = 0
        self.regs[0xF7:0xFD] = bytes([0x80, 0, 0, 0x80, 0, 0])
        self.regs[0xFD:0xFF] = bytes([0x80, 0])
        self.ptr = 0
        self.done_at = None
        self.osrs_h_active = 0

    def settle(self):
        if self.done_at is not None and now() >= self.done_at:
            self.done_at = None
            self.finish()

    def finish(self):
        osrs_t = self.regs[0xF4] >> 5
        osrs_p = (self.regs[0xF4] >> 2) & 7
        osrs_h = self.osrs_h_active
        raw_t, raw_p, raw_h = self.RAW[self.n % len(self.RAW)]
        self.n += 1
        # §3.4.4: the IIR filter (config bits 4:2 → coefficient off, 2, 4, 8, 16) smooths temperature and pressure:
        # filtered = (filtered_old · (c − 1) + measured) / c. The truth logged below is what was measured.
        c = [1, 2, 4, 8, 16, 16, 16, 16][(self.regs[0xF5] >> 2) & 7]
        if c > 1 and self.filtered is not None:
            ft, fp = self.filtered
            out_t, out_p = (ft * (c - 1) + raw_t) // c, (fp * (c - 1) + raw_p) // c
        else:
            out_t, out_p = raw_t, raw_p
        self.filtered = (out_t, out_p)
        t = out_t if osrs_t else 0x80000
        p = out_p if osrs_p else 0x80000
        h = raw_h if osrs_h else 0x8000
        self.regs[0xF7:0xFA] = bytes([p >> 12, (p >> 4) & 0xFF, (p & 0xF) << 4])
        self.regs[0xFA:0xFD] = bytes([t >> 12, (t >> 4) & 0xFF, (t & 0xF) << 4])
        self.regs[0xFD:0xFF] = bytes([h >> 8, h & 0xFF])
        self.regs[0xF4] &= 0xFC  # back to sleep mode
        if osrs_t:
            temp, press, hum = self.compensate(raw_t, raw_p if osrs_p else 0x80000, h)
            truth(chip="bme280", n=self.n, temperature=temp, pressure=press / 100.0 if osrs_p else None,
                  humidity=hum if osrs_h else None)

    def start(self):
        # §9.1: t_measure = 1.25 + 2.3·T_os + (2.3·P_os + 0.575) + (2.3·H_os + 0.575) ms at most; typical
        # 1 + 2·T_os + (2·P_os + 0.5) + (2·H_os + 0.5).
        os_n = lambda code: 0 if code == 0 else min(1 << (code - 1), 16)
        ctrl = self.regs[0xF4]
        t, p, h = os_n(ctrl >> 5), os_n((ctrl >> 2) & 7), os_n(self.osrs_h_active)
        if a.slow:
            ms = 1.25 + 2.3 * t + (2.3 * p + 0.575 if p else 0) + (2.3 * h + 0.575 if h else 0)
        else:
            ms = 1.0 + 2.0 * t + (2.0 * p + 0.5 if p else 0) + (2.0 * h + 0.5 if h else 0)
        self.done_at = now() + ms / 1000.0

    def compensate(self, adc_t, adc_p, adc_h):
        t1, t2, t3 = self.T
        var1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
        var2 = (adc_t / 131072.0 - t1 / 8192.0) ** 2 * t3
        t_fine = var1 + var2
        temp = t_fine / 5120.0
        p1, p2, p3, p4, p5, p6, p7, p8, p9 = self.P
        var1 = t_fine / 2.0 - 64000.0
        var2 = var1 * var1 * p6 / 32768.0
        var2 = var2 + var1 * p5 * 2.0
        var2 = var2 / 4.0 + p4 * 65536.0
        var1 = (p3 * var1 * var1 / 524288.0 + p2 * var1) / 524288.0
        var1 = (1.0 + var1 / 32768.0) * p1
        press = 1048576.0 - adc_p
        press = (press - var2 / 4096.0) * 6250.0 / var1
        var1 = p9 * press * press / 2147483648.0
        var2 = press * p8 / 32768.0
        press = press + (var1 + var2 + p7) / 16.0
        h1, h2, h3, h4, h5, h6 = self.H
        var_h = t_fine - 76800.0
        var_h = (adc_h - (h4 * 64.0 + h5 / 16384.0 * var_h)) * (
            h2 / 65536.0 * (1.0 + h6 / 67108864.0 * var_h * (1.0 + h3 / 67108864.0 * var_h)))
        var_h = var_h * (1.0 - h1 * var_h / 524288.0)
        return temp, press, max(0.0, min(100.0, var_h))

    def write(self, data):
        self.settle()
        if not data:
            return
        self.ptr = data[0]
        # Writes are register/value pairs.
        for reg, v in zip(data[0::2], data[1::2]):
            if reg == 0xE0 and v == 0xB6:
                self.reset()
            elif reg == 0xF2:
                self.regs[0xF2] = v & 7
            elif reg == 0xF4:
                self.regs[0xF4] = v
                # ctrl_hum takes effect with the write to ctrl_meas.
                self.osrs_h_active = self.regs[0xF2] & 7
                if v & 3 in (1, 2) and self.done_at is None:
                    self.start()
            elif reg == 0xF5:
                self.regs[0xF5] = v
            # Other registers are read-only.

    def read(self, n):
        self.settle()
        status = 0x08 if self.done_at is not None else 0
        out = bytearray()
        p = self.ptr
        for _ in range(n):
            out.append(status if p == 0xF3 else self.regs[p & 0xFF])
            p += 1
        self.ptr = p & 0xFF
        return bytes(out)


def crc8(data):
    c = 0xFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


class Sht4x:
    SEQ = [(25.0, 45.0), (25.5, 46.0), (24.5, 44.0)]

    def __init__(self):
        self.busy_until = 0.0
        self.out = b""
        self.n = 0

    def write(self, data):
        if now() < self.busy_until:
            raise Nack()
        if data[:1] == b"\xfd":
            t, rh = self.SEQ[self.n % len(self.SEQ)]
            self.n += 1
            st = round((t + 45.0) * 65535 / 175.0)
            srh = round((rh + 6.0) * 65535 / 125.0)
            tb, hb = struct.pack(">H", st), struct.pack(">H", srh)
            self.out = tb + bytes([crc8(tb)]) + hb + bytes([crc8(hb)])
            self.busy_until = now() + 0.0083
            truth(chip="sht4x", n=self.n, temperature=-45 + 175 * st / 65535, humidity=-6 + 125 * srh / 65535)
        elif data[:1] == b"\x94":
            self.out = b""
            self.busy_until = now() + 0.001
        elif data[:1] == b"\x89":
            sn = b"\x12\x34"
            sn2 = b"\x56\x78"
            self.out = sn + bytes([crc8(sn)]) + sn2 + bytes([crc8(sn2)])

    def read(self, n):
        # While measuring, the sensor does not acknowledge its read header.
        if now() < self.busy_until:
            raise Nack(ENXIO)
        out, self.out = self.out[:n], self.out[n:]
        return out + bytes(n - len(out))


class Tmp117:
    def __init__(self):
        self.t = 21.5
        # Powered up with the first transfer addressed to it (a gateway that just booted, or a chip that was
        # reset): its first conversion is 125 ms away.
        self.powered = None
        self.ptr = 0
        self.config = 0x0220
        self.ready_read = False

    def converted(self):
        # First conversion done 125 ms after power-up (averaging of 8), then one per second.
        return self.powered is not None and now() - self.powered >= 0.125

    def write(self, data):
        if self.powered is None:
            self.powered = now()
        if data:
            self.ptr = data[0]
        if len(data) >= 3 and self.ptr == 0x01:
            self.config = (data[1] << 8 | data[2]) & 0x0FFC

    def read(self, n):
        if self.ptr == 0x00:
            v = round(self.t / 0.0078125) if self.converted() else -32768
            if self.converted():
                truth(chip="tmp117", temperature=v * 0.0078125)
            self.ready_read = True
            b = struct.pack(">h", v)
        elif self.ptr == 0x01:
            dr = 0x2000 if self.converted() and not self.ready_read else 0
            b = struct.pack(">H", self.config | dr)
            self.ready_read = self.ready_read and not dr
        elif self.ptr == 0x0F:
            b = b"\x01\x17"
        else:
            b = b"\x00\x00"
        return (b * ((n + 1) // 2))[:n]


class Ina219:
    def __init__(self, shunt_v=0.0325, bus_v=12.0):
        self.shunt_v, self.bus_v = shunt_v, bus_v
        self.regs = {0: 0x399F, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0}
        self.ptr = 0
        self.last = now()
        self.cnvr = False

    def settle(self):
        # Continuous shunt and bus conversions at 12 bits: 532 µs each.
        period = 0.001064
        if (self.regs[0] & 7) != 7:
            return
        if now() - self.last >= period:
            self.last = now()
            shunt = round(self.shunt_v / 10e-6)
            self.regs[1] = shunt & 0xFFFF
            self.regs[2] = (round(self.bus_v / 0.004) << 3)
            cal = self.regs[5]
            current = (shunt * cal) // 4096
            self.regs[4] = current & 0xFFFF
            self.regs[3] = (current * (self.regs[2] >> 3)) // 5000 & 0xFFFF
            self.cnvr = True
            if cal:
                truth(chip="ina219", calibration=cal, current_raw=current)

    def write(self, data):
        self.settle()
        if data:
            self.ptr = data[0]
        if len(data) >= 3:
            v = data[1] << 8 | data[2]
            if self.ptr == 0:
                if v & 0x8000:
                    self.__init__(self.shunt_v, self.bus_v)
                    return
                self.regs[0] = v
                self.cnvr = False
            elif self.ptr == 5:
                self.regs[5] = v & 0xFFFE
                # Current and power follow only from the next conversion.
                self.last = now()

    def read(self, n):
        self.settle()
        v = self.regs.get(self.ptr, 0)
        if self.ptr == 2:
            v = (v & 0xFFF8) | (2 if self.cnvr else 0)
        if self.ptr == 3:
            self.cnvr = False
        return (struct.pack(">H", v) * ((n + 1) // 2))[:n]


class Ads1115:
    FS = [6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256]
    SPS = [8, 16, 32, 64, 128, 250, 475, 860]

    def __init__(self, inputs=(1.98, 0.66, 3.3, 0.0)):
        self.inputs = inputs
        self.config = 0x8583
        self.conv = 0
        self.ptr = 0
        self.done_at = None

    def settle(self):
        if self.done_at is not None and now() >= self.done_at:
            self.done_at = None
            mux = (self.config >> 12) & 7
            fs = self.FS[(self.config >> 9) & 7]
            v = {0: self.inputs[0] - self.inputs[1], 1: self.inputs[0] - self.inputs[3],
                 2: self.inputs[1] - self.inputs[3], 3: self.inputs[2] - self.inputs[3]}.get(mux)
            if v is None:
                v = self.inputs[mux - 4]
            code = max(-32768, min(32767, int(v / fs * 32768)))
            self.conv = code & 0xFFFF
            truth(chip="ads1115", mux=mux, volts=code * fs / 32768)

    def write(self, data):
        self.settle()
        if data:
            self.ptr = data[0]
        if len(data) >= 3 and self.ptr == 1:
            v = data[1] << 8 | data[2]
            self.config = v & 0x7FFF
            if v & 0x8000 and self.done_at is None:
                self.done_at = now() + 1.0 / self.SPS[(v >> 5) & 7] + 0.0001

    def read(self, n):
        self.settle()
        if self.ptr == 0:
            v = self.conv
        elif self.ptr == 1:
            v = self.config | (0 if self.done_at is not None else 0x8000)
        else:
            v = 0
        return (struct.pack(">H", v) * ((n + 1) // 2))[:n]


devices = {0x76: Bme280(), 0x44: Sht4x(), 0x48: Tmp117(), 0x40: Ina219(), 0x49: Ads1115()}
for x in a.absent:
    devices.pop(int(x, 0), None)


def control(addr):
    if not a.ctl:
        return
    brown = os.path.join(a.ctl, f"brownout-{addr:02x}")
    if os.path.exists(brown):
        os.unlink(brown)
        dev = devices.get(addr)
        # A supply glitch: the chip restarts with its power-on register values.
        if hasattr(dev, "reset"):
            dev.reset()
        elif dev is not None:
            dev.__init__()
        truth(chip="brownout", address=addr)
    hang = os.path.join(a.ctl, f"hang-{addr:02x}")
    while os.path.exists(hang):
        time.sleep(0.01)


def transfer(msgs):
    """msgs: [(addr, flags, len, data)] → (errno, [read bytes])"""
    reads = []
    with lock:
        for addr, flags, n, data in msgs:
            control(addr)
            dev = devices.get(addr)
            if dev is None:
                return ENXIO, []
            try:
                if flags & 1:
                    reads.append(dev.read(n))
                else:
                    dev.write(data)
            except Nack as e:
                return e.errno, []
    return 0, reads


def recv_exact(c, n):
    b = b""
    while len(b) < n:
        chunk = c.recv(n - len(b))
        if not chunk:
            raise EOFError
        b += chunk
    return b


def serve(c):
    try:
        while True:
            (nmsgs,) = recv_exact(c, 1)
            msgs = []
            for _ in range(nmsgs):
                addr, flags, n = struct.unpack("<HHH", recv_exact(c, 6))
                data = b"" if flags & 1 else recv_exact(c, n)
                msgs.append((addr, flags, n, data))
            err, reads = transfer(msgs)
            c.sendall(struct.pack("<i", err) + (b"".join(reads) if err == 0 else b""))
    except (EOFError, ConnectionError):
        pass
    finally:
        c.close()


if os.path.exists(a.socket):
    os.unlink(a.socket)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(a.socket)
srv.listen(16)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
