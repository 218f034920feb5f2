"""Deterministic generator of the messy sample plant (run: python sample_data/generate.py).

Two lines × three machines (plus a headerless PLC dump on line3), five sensors each
(temperature, vibration RMS, pressure, motor current, flow) with a daily three-shift pattern,
exported the way real historians, PLC loggers and SCADA systems do it. sample_data/README.md
lists the quirks each file carries; the recipe recipes/ingest_sample.yaml ingests them all.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

HERE = Path(__file__).resolve().parent
BERLIN = ZoneInfo("Europe/Berlin")
STEP = dt.timedelta(minutes=5)
SENSORS = ("temperature", "vibration_rms", "pressure", "motor_current", "flow")


def shift_load(times_utc: list[dt.datetime]) -> np.ndarray:
    """Plant load 0..1: early shift 06-14 full, late 14-22 at 80 %, night 22-06 at 30 %."""
    hours = np.array([t.astimezone(BERLIN).hour + t.minute / 60 for t in times_utc])
    weekday = np.array([t.astimezone(BERLIN).weekday() for t in times_utc])
    load = np.where(
        (hours >= 6) & (hours < 14), 1.0, np.where((hours >= 14) & (hours < 22), 0.8, 0.3)
    )
    return load * np.where(weekday >= 5, 0.5, 1.0)


def simulate(
    start_utc: dt.datetime, n: int, seed: int
) -> tuple[list[dt.datetime], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    times = [start_utc + i * STEP for i in range(n)]
    load = shift_load(times)
    smooth = np.convolve(load, np.ones(12) / 12, mode="same")  # thermal lag ~1 h
    hours = np.array([t.hour for t in times])
    ambient = 18 + 4 * np.sin((hours - 9) / 24 * 2 * np.pi)
    values = {
        "temperature": ambient + 35 * smooth + rng.normal(0, 0.4, n),
        "vibration_rms": 1.2 + 3.5 * load + rng.gamma(2.0, 0.15, n),
        "pressure": 4.0 + 2.5 * load + rng.normal(0, 0.05, n),
        "motor_current": 8 + 30 * load + rng.normal(0, 0.6, n),
        "flow": 300 + 1200 * load + rng.normal(0, 15, n),
    }
    return times, values


def write(path: Path, text: str, encoding: str = "utf-8", gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode(encoding)
    if gz:
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as handle:
            handle.write(data)
        data = buffer.getvalue()
    path.write_bytes(data)


OCT = dt.datetime(2024, 10, 21, tzinfo=dt.timezone.utc)  # ten days including the DST fall-back
N = 10 * 24 * 12


def line1_machine1() -> None:
    """UTF-8 BOM, ISO 8601 with offset, comments, sentinels, disorder, duplicate rows, spikes."""
    rng = np.random.default_rng(11)
    times, v = simulate(OCT, N, 1)
    v["vibration_rms"][[500, 1500, 2500]] = [48.0, 45.0, 47.5]  # spikes (still inside range)
    rows = []
    for i, t in enumerate(times):
        local = t.astimezone(BERLIN).isoformat()
        cells = [f"{v[s][i]:.3f}" for s in SENSORS]
        if i % 97 == 5:
            cells[rng.integers(0, 5)] = "-999"
        if i % 131 == 7:
            cells[rng.integers(0, 5)] = "NaN"
        if i % 151 == 3:
            cells[rng.integers(0, 5)] = ""
        rows.append(",".join([local, *cells]))
    for i in range(200, N, 400):  # rows out of order
        rows[i], rows[i + 1] = rows[i + 1], rows[i]
    for i in range(300, N, 700):  # identical duplicate rows
        rows.insert(i, rows[i])
    for i in range(1000, len(rows), 1200):
        rows.insert(i, "# operator note: filter changed")
    header = "timestamp,temperature,vibration_rms,pressure,motor_current,flow"
    write(HERE / "line1/machine1_2024-10.csv", "\ufeff" + "\n".join([header, *rows]) + "\n")


def line1_machine2() -> None:
    """cp1252, ';' + decimal comma + thousands '.', preamble, units row, dd.mm.yyyy, junk."""
    times, v = simulate(OCT, N, 2)
    v["temperature"][1800:1830] = 480.0  # a broken thermocouple: outside the physical range
    junk = ["ERR", "#VALUE!", "--", "offline", "N/A"]

    def num(x: float, decimals: int) -> str:
        text = f"{x:,.{decimals}f}"  # 1,234.5
        return text.replace(",", "_").replace(".", ",").replace("_", ".")  # 1.234,5

    lines = [
        "Logger: S7-1500 PLC line1/m2",
        "Export date: 01.11.2024 06:00",
        "",
        "Zeit;Temperatur [°C];Vibration RMS;Druck;Motorstrom;Durchfluss",
        ";°C;mm/s;bar;A;l/min",
    ]
    for i, t in enumerate(times):
        local = t.astimezone(BERLIN).strftime("%d.%m.%Y %H:%M:%S")
        cells = [
            num(v["temperature"][i], 2),
            num(v["vibration_rms"][i], 3),
            num(v["pressure"][i], 3),
            num(v["motor_current"][i], 2),
            num(v["flow"][i], 1),
        ]
        if i % 89 == 11:
            cells[i % 5] = junk[i % len(junk)]
        lines.append(";".join([local, *cells]))
    write(HERE / "line1/machine2_2024-10.csv", "\r\n".join(lines) + "\r\n", encoding="cp1252")


def line1_machine3() -> None:
    """Long layout, tab, epoch ms, conflicting duplicates, stuck sensor, out of range."""
    times, v = simulate(OCT, N, 3)
    v["pressure"][900:1000] = v["pressure"][900]  # stuck pressure transmitter for 100 samples
    v["motor_current"][2000:2006] = -50.0  # impossible current
    lines = ["timestamp\ttag\tvalue\tquality"]
    for i, t in enumerate(times):
        ms = int(t.timestamp() * 1000)
        for s in SENSORS:
            lines.append(f"{ms}\t{s}\t{v[s][i]:.4f}\tGOOD")
        if i % 250 == 17:  # the historian wrote a second, different value for the same time
            lines.append(f"{ms}\tflow\t{v['flow'][i] + 55:.4f}\tUNCERTAIN")
    write(HERE / "line1/machine3_2024-10.tsv", "\n".join(lines) + "\n")


def line2_machine1() -> None:
    """'|' .txt, mm/dd/yyyy hh:mm AM over the DST fall-back, jitter, gaps, text sentinels."""
    rng = np.random.default_rng(21)
    times, v = simulate(OCT, N, 4)
    lines = ["Date Time|Temperature|Vibration_RMS|Pressure|Motor_Current|Flow"]
    for i, t in enumerate(times):
        if 1200 <= i < 1236:  # three hours without data (network outage)
            continue
        jitter = dt.timedelta(seconds=int(rng.integers(-20, 21)))
        local = (t + jitter).astimezone(BERLIN).strftime("%m/%d/%Y %I:%M:%S %p")
        cells = [f"{v[s][i]:.2f}" for s in SENSORS]
        if i % 113 == 9:
            cells[i % 5] = ["#N/A", "null", "9999", "-9999"][i % 4]
        lines.append("|".join([local, *cells]))
    write(HERE / "line2/machine1_2024-10.txt", "\n".join(lines) + "\n")


def line2_machine2() -> None:
    """gzip, separate date and time columns (UTC), thousands ',' with ';', a truncated last line."""
    times, v = simulate(OCT, N, 5)
    lines = ["Date;Time;temperature;vibration_rms;pressure;motor_current;flow"]
    for i, t in enumerate(times):
        flow = f"{v['flow'][i]:,.1f}"
        cells = [f"{v[s][i]:.2f}" for s in SENSORS[:4]] + [flow]
        lines.append(";".join([t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S"), *cells]))
    text = "\n".join(lines) + "\n" + "2024-10-31;00:00:00;41.2"  # still being written
    write(HERE / "line2/machine2_2024-10.csv.gz", text, gz=True)


def line2_machine3() -> None:
    """Local time over the DST spring-forward (March), naive ISO, Latin-1, empty cells, a gap."""
    start = dt.datetime(2024, 3, 28, tzinfo=dt.timezone.utc)
    times, v = simulate(start, 7 * 24 * 12, 6)
    lines = ["Zeitstempel,Temperatur_°C,vibration_rms,pressure,motor_current,flow"]
    for i, t in enumerate(times):
        if 700 <= i < 760:
            continue
        local = t.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M")
        cells = [f"{v[s][i]:.2f}" for s in SENSORS]
        if i % 101 == 1:
            cells[(i // 101) % 5] = ""
        lines.append(",".join([local, *cells]))
    write(HERE / "line2/machine3_2024-03.csv", "\n".join(lines) + "\n", encoding="latin-1")


def line3_machine1() -> None:
    """Headerless whitespace-separated numbers (TEP/C-MAPSS style); start/interval in the recipe."""
    times, v = simulate(OCT, 3 * 24 * 20, 7)
    lines = ["  ".join(f"{v[s][i]:.5e}" for s in SENSORS) + "  " for i in range(len(times))]
    write(HERE / "line3/machine1_plc.dat", "\n".join(lines) + "\n")


def main() -> None:
    for make in (
        line1_machine1,
        line1_machine2,
        line1_machine3,
        line2_machine1,
        line2_machine2,
        line2_machine3,
        line3_machine1,
    ):
        make()


if __name__ == "__main__":
    main()
