#!/usr/bin/python3
"""An independent HTTP/2 peer for interop tests: Python's hyper-h2 (pure Python, unrelated to nghttp2).

  h2peer.py server            listen on 127.0.0.1:0, print the port; echo every CONNECT stream
  h2peer.py client PORT N SIZE  open N CONNECT streams, send SIZE bytes on each, read the echo,
                              print a JSON report
  h2peer.py tls-client HOST PORT N SIZE AUTHORITY CERT KEY CA
                              the same over HBONE's mutual TLS (TLS 1.3, ALPN h2, no SNI, client
                              certificate), CONNECT to AUTHORITY (an HBONE tunnel through a node proxy)

h2 4.1 rejects a correct CONNECT (no :path) unless header validation is off in that direction
(python-hyper/h2#1247), hence validate_*_headers=False.
"""
import hashlib
import json
import select
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def pattern(n, seed):
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:n])


class Peer:
    def __init__(self, sock, conn):
        self.sock = sock
        self.conn = conn
        self.outq = {}  # stream id -> [bytes, end]

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def queue(self, sid, data, end):
        q = self.outq.setdefault(sid, [b"", False])
        q[0] += data
        q[1] = q[1] or end
        self.pump()

    def pump(self):
        for sid in list(self.outq):
            data, end = self.outq[sid]
            while data:
                try:
                    room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                except Exception:
                    data = b""
                    break
                if room <= 0:
                    break
                self.conn.send_data(sid, data[:room])
                data = data[room:]
            self.outq[sid][0] = data
            if not data and end:
                try:
                    self.conn.end_stream(sid)
                except Exception:
                    pass
                del self.outq[sid]
        self.flush()

    def recv(self, timeout=10.0):
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            raise TimeoutError("no data from peer")
        data = self.sock.recv(1 << 20)
        if not data:
            return None
        events = self.conn.receive_data(data)
        self.flush()
        return events


def serve():
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    print(lsock.getsockname()[1], flush=True)
    while True:
        sock, _ = lsock.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=False, validate_inbound_headers=False)
        peer = Peer(sock, h2.connection.H2Connection(config=cfg))
        peer.conn.initiate_connection()
        peer.flush()
        try:
            while True:
                events = peer.recv(timeout=30)
                if events is None:
                    break
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        headers = dict((k.decode(), v.decode()) for k, v in ev.headers)
                        if headers.get(":method") != "CONNECT" or ":path" in headers:
                            peer.conn.reset_stream(ev.stream_id, error_code=1)
                        else:
                            peer.conn.send_headers(ev.stream_id, [(":status", "200"), ("baggage", "k8s.cluster.name=python")])
                    elif isinstance(ev, h2.events.DataReceived):
                        peer.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        peer.queue(ev.stream_id, ev.data, False)
                    elif isinstance(ev, h2.events.StreamEnded):
                        peer.queue(ev.stream_id, b"", True)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        raise ConnectionError("terminated")
                peer.pump()
        except (ConnectionError, OSError, TimeoutError):
            pass
        sock.close()


def client(port, n, size, host="127.0.0.1", tls=None, authority=None):
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer_sans = []
    if tls:
        cert, key, ca = tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
        ctx.check_hostname = False  # SPIFFE identities are URI SANs, checked below
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname=None)  # HBONE sends no SNI
        if sock.selected_alpn_protocol() != "h2":
            raise SystemExit("server did not select h2")
        peer_sans = [v for k, v in sock.getpeercert().get("subjectAltName", ()) if k == "URI"]
    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False)
    peer = Peer(sock, h2.connection.H2Connection(config=cfg))
    peer.conn.initiate_connection()
    peer.flush()
    want, got, status, headers, ended = {}, {}, {}, {}, set()
    for i in range(n):
        sid = peer.conn.get_next_available_stream_id()
        peer.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", authority or "10.0.0.%d:80" % i), ("baggage", "k8s.cluster.name=python")])
        want[sid] = pattern(size, i)
        got[sid] = bytearray()
        peer.queue(sid, want[sid], True)
    resets = {}
    while len(ended) + len(resets) < n:
        events = peer.recv()
        if events is None:
            break
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                hs = dict((k.decode(), v.decode()) for k, v in ev.headers)
                status[ev.stream_id] = int(hs[":status"])
                headers[ev.stream_id] = hs
            elif isinstance(ev, h2.events.DataReceived):
                got[ev.stream_id] += ev.data
                peer.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                resets[ev.stream_id] = ev.error_code
        peer.pump()
    peer.conn.close_connection()
    peer.flush()
    sock.close()
    print(json.dumps({
        "streams": n,
        "ended": len(ended),
        "equal": all(bytes(got[s]) == want[s] for s in want),
        "bytes": sum(len(g) for g in got.values()),
        "status": sorted(set(status.values())),
        "baggage": sorted(set(h.get("baggage", "") for h in headers.values())),
        "resets": resets,
        "peerSans": peer_sans,
    }), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    elif sys.argv[1] == "tls-client":
        host, port, n, size, authority, cert, key, ca = sys.argv[2:10]
        client(int(port), int(n), int(size), host=host, tls=(cert, key, ca), authority=authority)
    else:
        client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
