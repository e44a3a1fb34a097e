"""HTTP emulators of remote APIs, served on 127.0.0.1 for the real client libraries."""


def half_request(url: str, method: str, path: str) -> None:
    """A client killed between a request's headers and its body, as SIGKILL can leave one
    (http.client sends the two apart): the headers promise a body that never comes."""
    import socket
    import urllib.parse

    where = urllib.parse.urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=5) as conn:
        conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: {where.netloc}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{".encode())
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(4096):  # until the server is done with it and closes
            pass
