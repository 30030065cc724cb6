#!/usr/bin/env python3
"""Makes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from real traffic.

A Runnel broker runs behind a recording proxy; Runnel's CLI (librdkafka and
kafka-protocol) and kcat talk to it through the proxy. Each client connection's
bytes become one `request` seed (a stream of size-prefixed frames, as the broker
reads it); the broker's segment files become `segment_recovery` seeds (one flags
byte, then the file) and their batches, with the base offset zeroed as a
producer sends it (the CRC does not cover it), `record_batch` seeds. The `scram`
seeds are written by hand (RFC 5802's example shape).

    fuzz/capture_seeds.py --runnel target/release/runnel
"""
import argparse
import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

MAX_SEED = 64 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def whole_frames(data, limit):
    """The longest run of whole size-prefixed frames at the start of data, at most limit bytes."""
    pos = 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack(">i", data[pos:pos + 4])
        if n < 0 or pos + 4 + n > len(data) or pos + 4 + n > limit:
            break
        pos += 4 + n
    return data[:pos]


def batches(segment):
    pos = 0
    while pos + 61 <= len(segment):
        (length,) = struct.unpack(">i", segment[pos + 8:pos + 12])
        if length < 49 or pos + 12 + length > len(segment):
            break
        yield segment[pos:pos + 12 + length]
        pos += 12 + length


def save(directory, data):
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


class Proxy:
    def __init__(self, listen_port, target_port):
        self.streams = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", listen_port))
        self.target = target_port
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            recorded = bytearray()
            with self.lock:
                self.streams.append(recorded)
            threading.Thread(target=self.pipe, args=(client, upstream, recorded), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def pipe(src, dst, recorded):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if recorded is not None and len(recorded) < 4 * MAX_SEED:
                    recorded.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runnel", required=True)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds"))
    args = parser.parse_args()
    runnel = os.path.abspath(args.runnel)
    data_dir = tempfile.mkdtemp()
    broker_port, proxy_port = free_port(), free_port()
    proxy = Proxy(proxy_port, broker_port)
    broker = subprocess.Popen(
        [runnel, "serve", "--listen", f"127.0.0.1:{broker_port}", "--advertised-listener", f"127.0.0.1:{proxy_port}",
         "--data-dir", data_dir, "--set", "num.partitions=2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{proxy_port}"

    def run(*cmd, stdin=None):
        subprocess.run(list(cmd), input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", broker_port)).close()
                break
            except OSError:
                time.sleep(0.1)
        cli = [runnel, "-b", bootstrap]
        run(*cli, "topic", "create", "seeds", "--partitions", "2")
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
            lines = "".join(f"k{i}\tvalue {i} {codec}\n" for i in range(20)).encode()
            run(*cli, "produce", "seeds", "-K", "\t", "--compression", codec, "-H", "h=v", stdin=lines)
        run(*cli, "consume", "seeds", "--from-beginning", "-g", "seed-group", "-n", "50", "--timeout-ms", "3000")
        run(*cli, "consume", "seeds", "-p", "0", "-o", "earliest", "-n", "5", "--timeout-ms", "2000")
        run(*cli, "topic", "list")
        run(*cli, "topic", "describe", "seeds")
        run(*cli, "topic", "alter-config", "seeds", "--set", "retention.ms=86400000")
        run(*cli, "topic", "alter", "seeds", "--partitions", "3")
        run(*cli, "group", "list")
        run(*cli, "group", "describe", "seed-group")
        run(*cli, "group", "lag")
        run(*cli, "txn", "list")
        run(*cli, "cluster", "describe")
        run(*cli, "user", "scram", "list")
        run(*cli, "acl", "list")
        run(*cli, "topic", "delete-records", "seeds", "--partition", "0", "--before", "1")
        run("kcat", "-b", bootstrap, "-L")
        run("kcat", "-b", bootstrap, "-P", "-t", "seeds", "-p", "1", stdin=b"one\ntwo\n")
        run("kcat", "-b", bootstrap, "-C", "-t", "seeds", "-p", "1", "-o", "beginning", "-e")
        run("kcat", "-b", bootstrap, "-G", "kcat-group", "-e", "-q", "seeds")
        time.sleep(1)
    finally:
        broker.terminate()
        broker.wait(timeout=30)

    with proxy.lock:
        streams = [bytes(s) for s in proxy.streams]
    for stream in streams:
        frames = whole_frames(stream, MAX_SEED)
        if frames:
            save(os.path.join(args.out, "request"), frames)
    for root, _, files in os.walk(data_dir):
        for name in files:
            if not name.endswith(".log") or "__" in root:
                continue
            with open(os.path.join(root, name), "rb") as f:
                segment = f.read()
            if not segment:
                continue
            kept = b"".join(b for b in batches(segment))[:MAX_SEED]
            for flags in (0, 1):
                save(os.path.join(args.out, "segment_recovery"), bytes([flags]) + kept)
            for batch in batches(segment):
                save(os.path.join(args.out, "record_batch"), b"\0" * 8 + batch[8:])
    scram = [
        b"\x00\x00alice\x00alice-secret",
        b"\x00alice\x00alice\x00alice-secret",
        b"\x00\x00mallory\x00guess",
    ]
    for selector in (1, 2):
        for first in (b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL", b"n,a=alice,n=alice,r=rOprNGfwEbeRWgbNEkqO",
                      b"n,,n=alice,r=3rfcNHYJY1ZVvWVs7j,tokenauth=false"):
            gs2 = b"n,a=alice," if first.startswith(b"n,a=") else b"n,,"
            import base64
            final = b"c=" + base64.b64encode(gs2) + b",r=@NONCE@,p=@PROOF@"
            scram.append(bytes([selector]) + first + b"\xff" + final)
    # 3: OAUTHBEARER client first messages (an unsecured JWT, as Kafka's default validator takes).
    def b64url(data):
        import base64
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    jwt = b64url(b'{"alg":"none"}') + b"." + b64url(b'{"sub":"alice","exp":4102444800,"iat":1700000000,"scope":"a b"}') + b"."
    scram.append(b"\x03n,,\x01auth=Bearer " + jwt + b"\x01\x01")
    scram.append(b"\x03n,a=alice,\x01auth=Bearer " + jwt + b"\x01traceId=1\x01\x01")
    # 4: a broker's SCRAM login meeting another broker's server-first and server-final messages.
    scram.append(b"\x04r=@NONCE@srv,s=c2FsdA==,i=4096\xffv=AAAA")
    scram.append(b"\x04r=@NONCE@srv,s=c2FsdA==,i=4096,ext=1\xffe=invalid-proof")
    for seed in scram:
        save(os.path.join(args.out, "scram"), seed)
    for target in sorted(os.listdir(args.out)):
        print(target, len(os.listdir(os.path.join(args.out, target))), file=sys.stderr)


if __name__ == "__main__":
    main()
