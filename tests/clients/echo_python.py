"""Python's `websockets` against wsock's echo example: text, binary, 1 MiB messages, ping,
close codes, with permessage-deflate (on by default in websockets) checked as negotiated.
Usage: python3 echo_python.py ws://127.0.0.1:PORT/ (or, over TLS, with the
certificate to trust: python3 echo_python.py wss://127.0.0.1:PORT/ cert.pem)

Prints one line per step; `READY shutdown` asks the test to stop the server (Ctrl-C), after
which the open connection must get 1001. Exits non-zero on the first failure."""

import asyncio
import functools
import json
import os
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 10
MIB = 1 << 20


def check(condition, what):
    if not condition:
        raise AssertionError(what)


async def round_trip(ws, message):
    await ws.send(message)
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def main(url, cafile=None):
    if cafile:
        global connect
        context = ssl.create_default_context(cafile=cafile)
        connect = functools.partial(connect, ssl=context)
    async with connect(url, max_size=4 * MIB, open_timeout=TIMEOUT) as ws:
        names = [extension.name for extension in ws.protocol.extensions]
        check(names == ["permessage-deflate"], f"negotiated extensions: {names}")
        agreed = ws.response.headers["Sec-WebSocket-Extensions"]
        print(f"ok negotiated {agreed}")
        rows = [{"id": i, "user": f"user{i % 7}", "text": f"hello number {i}"} for i in range(400)]
        text = json.dumps(rows)
        echo = await round_trip(ws, text)
        check(echo == text, "the JSON echo")
        print(f"ok {len(text)} bytes of JSON, compressed both ways")
        if cafile:
            tls = ws.transport.get_extra_info("ssl_object")
            check(tls is not None, "the connection is not over TLS")
            print(f"ok {tls.version()} with the trusted certificate")
        echo = await round_trip(ws, "hello from python")
        check(echo == "hello from python", f"text echo: {echo!r}")
        print("ok text")

        echo = await round_trip(ws, b"\x00\x01\xfe\xff")
        check(isinstance(echo, bytes) and echo == b"\x00\x01\xfe\xff", f"binary echo: {echo!r}")
        print("ok binary")

        big = os.urandom(MIB)
        echo = await round_trip(ws, big)
        check(echo == big, f"1 MiB binary echo: {len(echo)} bytes, equal: {echo == big}")
        text = "é" * (MIB // 2)  # 1 MiB of UTF-8
        echo = await round_trip(ws, text)
        check(echo == text, f"1 MiB text echo: {len(echo)} chars")
        print("ok 1 MiB binary and text")

        pong = await ws.ping(b"wsock")
        latency = await asyncio.wait_for(pong, TIMEOUT)
        print(f"ok ping answered in {latency * 1000:.2f} ms")

        # Order holds over many messages in flight.
        for i in range(200):
            await ws.send(f"m{i}")
        for i in range(200):
            echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
            check(echo == f"m{i}", f"message {i} came back as {echo!r}")
        print("ok 200 messages in order")

        await asyncio.wait_for(ws.close(4000, "done"), TIMEOUT)
        check(ws.close_code == 4000, f"close code echoed: {ws.close_code}")
        check(ws.close_reason == "done", f"close reason echoed: {ws.close_reason!r}")
        print("ok close 4000 echoed")

    async with connect(url, open_timeout=TIMEOUT) as ws:
        await asyncio.wait_for(ws.close(), TIMEOUT)
        check(ws.close_code == 1000, f"normal close: {ws.close_code}")
        print("ok close 1000")

    async with connect(url, open_timeout=TIMEOUT) as ws:
        check(await round_trip(ws, "before shutdown") == "before shutdown", "echo")
        print("READY shutdown", flush=True)
        try:
            message = await asyncio.wait_for(ws.recv(), TIMEOUT)
            raise AssertionError(f"expected the close, got {message!r}")
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            check(code == 1001, f"shutdown close code: {code} ({closed})")
        print("ok shutdown gives 1001")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    asyncio.run(main(*sys.argv[1:3]))
    print("all python checks passed")
