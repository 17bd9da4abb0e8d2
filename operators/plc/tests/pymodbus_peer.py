#!/usr/bin/env python3
"""Real Modbus TCP peer (pymodbus) for forgeline-plc's integration tests. Loopback only.

Modes:
  server --port P [--coils N] [--registers N]
      A Modbus TCP server holding N coils and N holding registers (addresses 0..N-1, all zero),
      for any unit id. Prints `READY <port>` once listening, then one JSON line per write request
      it receives: {"fc": 5|6|15|16, "address": A, "values": [...]}. Stops on SIGTERM/stdin EOF.
  client --port P --unit U
      Writes a fixed pattern (coil 3 on, registers 10..13 = 1,2,3,0xBEEF, register 20 = 7 via FC6),
      reads coils 0..7 and registers 10..13 and 20 back, and prints one JSON line with what it read.
"""

import argparse
import asyncio
import json
import sys

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice, DataType


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def trace_pdu(sending, pdu):
    # Log each request received (not our responses) that writes something.
    if not sending and pdu.function_code in (5, 6, 15, 16):
        values = list(pdu.bits) if pdu.function_code in (5, 15) else list(pdu.registers)
        if pdu.function_code == 5:
            values = values[:1]
        emit({"fc": pdu.function_code, "address": pdu.address, "values": [int(v) for v in values]})
    return pdu


async def run_server(port, coils, registers):
    device = SimDevice(
        id=0,
        simdata=(
            [SimData(0, count=coils, values=False, datatype=DataType.BITS)],
            [SimData(0, count=coils, values=False, datatype=DataType.BITS)],
            [SimData(0, count=registers, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=registers, values=0, datatype=DataType.REGISTERS)],
        ),
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", port), trace_pdu=trace_pdu)
    await server.listen()
    emit_ready = f"READY {port}"
    sys.stdout.write(emit_ready + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    # Stop when the test closes our stdin (or kills us).
    await loop.run_in_executor(None, sys.stdin.read)
    await server.shutdown()


async def run_client(port, unit):
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    if not await client.connect():
        emit({"error": f"cannot connect to 127.0.0.1:{port}"})
        return 1
    out = {}
    r = await client.write_coil(3, True, device_id=unit)
    out["write_coil_error"] = r.isError()
    r = await client.write_registers(10, [1, 2, 3, 0xBEEF], device_id=unit)
    out["write_registers_error"] = r.isError()
    r = await client.write_register(20, 7, device_id=unit)
    out["write_register_error"] = r.isError()
    r = await client.read_coils(0, count=8, device_id=unit)
    out["coils"] = None if r.isError() else [bool(b) for b in r.bits[:8]]
    r = await client.read_holding_registers(10, count=4, device_id=unit)
    out["registers"] = None if r.isError() else list(r.registers)
    r = await client.read_holding_registers(20, count=1, device_id=unit)
    out["register20"] = None if r.isError() else list(r.registers)
    r = await client.read_holding_registers(60000, count=2, device_id=unit)
    out["out_of_range_is_error"] = r.isError()
    client.close()
    emit(out)
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["server", "client"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unit", type=int, default=1)
    parser.add_argument("--coils", type=int, default=64)
    parser.add_argument("--registers", type=int, default=256)
    args = parser.parse_args()
    if args.mode == "server":
        asyncio.run(run_server(args.port, args.coils, args.registers))
        return 0
    return asyncio.run(run_client(args.port, args.unit))


if __name__ == "__main__":
    sys.exit(main())
