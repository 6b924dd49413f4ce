#!/usr/bin/env python3
"""What the kubelet's gRPC probe sees: grpc.health.v1 Check against each ADDRESS/SERVICE.

Usage: health_probe.py [--timeout S] HOST:PORT/SERVICE ...   (SERVICE may be empty)
Prints one JSON object: {"HOST:PORT/SERVICE": "SERVING" | "NOT_SERVING" | "ERROR: ..."}.
"""

import argparse
import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, timeout: float) -> str:
    address, _, service = target.partition("/")
    # No proxy, as the kubelet dials the pod directly.
    with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as e:
            return f"ERROR: {e.code().name}"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args()
    print(json.dumps({t: check(t, args.timeout) for t in args.targets}))


if __name__ == "__main__":
    main()
