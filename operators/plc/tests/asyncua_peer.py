#!/usr/bin/env python3
"""Independent OPC UA server (python `asyncua` from PyPI) for forgeline-plc's tests. Loopback only.

  server --port P
      An OPC UA server at opc.tcp://127.0.0.1:P/ (security policy None, anonymous) with one
      object `Press` (namespace `urn:forgeline:test`, index 2) holding writable variables:

        ns=2;s=Press.Reject        Boolean
        ns=2;s=Press.Verdict       UInt16
        ns=2;s=Press.Severity      UInt16
        ns=2;s=Press.Score         Float
        ns=2;s=Press.Seq           UInt64
        ns=2;s=Press.ModelVersion  String
        ns=2;s=Press.FailSafe      Boolean
        ns=2;s=Press.Heartbeat     UInt16

      Prints `READY <port>` once listening, then one JSON line per Write service call it
      receives: {"writes": [{"node": "ns=2;s=Press.Verdict", "value": 2, "status": "Good"}, ...]}
      (values as JSON; NaN floats as the string "NaN"). Stops when stdin closes or on SIGTERM.
"""

import argparse
import asyncio
import json
import logging
import math
import sys

from asyncua import Server, ua
from asyncua.common.callback import CallbackType

VARIABLES = [
    ("Press.Reject", False, ua.VariantType.Boolean),
    ("Press.Verdict", 0, ua.VariantType.UInt16),
    ("Press.Severity", 0, ua.VariantType.UInt16),
    ("Press.Score", 0.0, ua.VariantType.Float),
    ("Press.Seq", 0, ua.VariantType.UInt64),
    ("Press.ModelVersion", "", ua.VariantType.String),
    ("Press.FailSafe", False, ua.VariantType.Boolean),
    ("Press.Heartbeat", 0, ua.VariantType.UInt16),
]


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def as_json(value):
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


async def log_write(event, _dispatcher):
    # Only the clients' writes (the server writes its own status nodes internally).
    if not event.is_external:
        return
    writes = []
    results = event.response_params or []
    for i, wv in enumerate(event.request_params.NodesToWrite):
        status = results[i].name if i < len(results) else "?"
        writes.append(
            {
                "node": wv.NodeId.to_string(),
                "value": as_json(wv.Value.Value.Value),
                "status": status,
            }
        )
    emit({"writes": writes})


async def run_server(port):
    logging.basicConfig(level=logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:forgeline:test")
    press = await server.nodes.objects.add_object(ua.NodeId("Press", idx), "Press")
    for name, initial, vtype in VARIABLES:
        var = await press.add_variable(
            ua.NodeId(name, idx), name, ua.Variant(initial, vtype), varianttype=vtype
        )
        await var.set_writable()
    server.subscribe_server_callback(CallbackType.PostWrite, log_write)
    async with server:
        emit_ready = f"READY {port}"
        sys.stdout.write(emit_ready + "\n")
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        # Stop when the test closes our stdin (or kills us).
        await loop.run_in_executor(None, sys.stdin.read)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["server"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(run_server(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
