"""A local OAuth 2.1 authorization server and token minter for the identity tests.

It listens on a free loopback port and prints that port as the first line of stdout (and
nothing else there; its log goes to stderr). Every run generates its own keys: one RSA-2048
key and one EC P-256 key, each with a `kid`, published at `/jwks.json`.

Routes:
  GET  /jwks.json      the public keys (every fetch is counted).
  GET  /stats          {"jwks_fetches": N, "requests": ["METHOD PATH", ...], "kids": {...}}.
  POST /rotate         adds a new RSA key with a new kid and signs RS256 tokens with it from
                       then on (the old keys stay published); answers {"kid": NEW}.
  POST /mint           mints exactly the token a test asks for (see `mint`); answers
                       {"token": TOKEN}.
  GET  /.well-known/oauth-authorization-server   RFC 8414 metadata.
  POST /register       RFC 7591 dynamic client registration (public clients).
  GET  /authorize      redirects at once to the client's redirect_uri with a code.
  POST /token          exchanges that code (PKCE S256 checked) for a JWT whose `aud` is the
                       `resource` the client asked for (RFC 8707).

A `/mint` request is a JSON object with any of:
  sub, roles (list), scope (string), aud, iss (default: this server's URL),
  exp_in, nbf_in (seconds from now; exp_in defaults to 3600, nbf is left out unless given),
  alg: "RS256" (default), "ES256", "none" (no signature), or "HS256-with-public-key" (an
       HMAC keyed with the RSA public key's PEM: the algorithm-confusion attack),
  kid: overrides the header's kid (an unknown kid, say),
  tamper: true to sign the claims and then swap in a payload naming another subject and
          the admin role, keeping the original signature,
  attacker_key: true to sign (RS256) with a key that is not in the JWKS while naming the real
          key's kid, and to carry the attacker's public key in the header twice over: as an
          embedded `jwk` and as a `jku` URL (`/attacker-jwks.json`, counted in /stats as
          attacker_jwks_fetches). A verifier that trusts either accepts the token.
"""

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

# The largest request body this server reads; the tests send a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value):
    return b64url(json.dumps(value, separators=(",", ":")).encode())


class Keys:
    """The signing keys of this run, with their public JWKS."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rsa = []  # (kid, private key), oldest first; the last one signs.
        self.add_rsa()
        self.ec_kid = f"ec-{secrets.token_hex(4)}"
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self.attacker = None  # Generated the first time a token asks for it.

    def attacker_key(self):
        with self.lock:
            if self.attacker is None:
                self.attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self.attacker

    def attacker_jwks(self):
        jwk = RSAAlgorithm.to_jwk(self.attacker_key().public_key(), as_dict=True)
        jwk.update({"kid": "attacker", "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def add_rsa(self):
        kid = f"rsa-{secrets.token_hex(4)}"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self.lock:
            self.rsa.append((kid, key))
        return kid

    def current_rsa(self):
        with self.lock:
            return self.rsa[-1]

    def jwks(self):
        with self.lock:
            rsa_keys = list(self.rsa)
        keys = []
        for kid, key in rsa_keys:
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
            keys.append(jwk)
        jwk = ECAlgorithm.to_jwk(self.ec_key.public_key(), as_dict=True)
        jwk.update({"kid": self.ec_kid, "use": "sig", "alg": "ES256"})
        keys.append(jwk)
        return {"keys": keys}


class Issuer:
    """What the routes share: keys, counters, registered clients and pending codes."""

    def __init__(self, options):
        self.options = options
        self.keys = Keys()
        self.url = None  # Set once the port is known.
        self.lock = threading.Lock()
        self.jwks_fetches = 0
        self.attacker_jwks_fetches = 0
        self.requests = []
        self.clients = {}
        self.codes = {}

    def record(self, method, path):
        with self.lock:
            self.requests.append(f"{method} {path}")

    def count_jwks_fetch(self):
        with self.lock:
            self.jwks_fetches += 1

    def count_attacker_jwks_fetch(self):
        with self.lock:
            self.attacker_jwks_fetches += 1

    def stats(self):
        with self.lock:
            return {
                "jwks_fetches": self.jwks_fetches,
                "attacker_jwks_fetches": self.attacker_jwks_fetches,
                "requests": list(self.requests),
                "kids": {"rsa": [kid for kid, _ in self.keys.rsa], "ec": self.keys.ec_kid},
            }

    def claims(self, spec):
        now = int(time.time())
        claims = {
            "iss": spec.get("iss", self.url),
            "sub": spec.get("sub", "alice"),
            "aud": spec.get("aud", self.options.audience),
            "iat": now,
            "exp": now + int(spec.get("exp_in", 3600)),
            "jti": secrets.token_hex(8),
        }
        if "nbf_in" in spec:
            claims["nbf"] = now + int(spec["nbf_in"])
        if "roles" in spec:
            claims["roles"] = spec["roles"]
        claims["scope"] = spec.get("scope", "mcp")
        return {name: value for name, value in claims.items() if value is not None}

    def mint(self, spec):
        """The token `spec` asks for (see the module's doc)."""
        claims = self.claims(spec)
        alg = spec.get("alg", "RS256")
        if spec.get("attacker_key"):
            kid = spec.get("kid", self.keys.current_rsa()[0])
            headers = {
                "kid": kid,
                "jwk": self.keys.attacker_jwks()["keys"][0],
                "jku": f"{self.url}/attacker-jwks.json",
            }
            token = jwt.encode(claims, self.keys.attacker_key(), algorithm="RS256", headers=headers)
        elif alg == "RS256":
            kid, key = self.keys.current_rsa()
            token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": spec.get("kid", kid)})
        elif alg == "ES256":
            kid = spec.get("kid", self.keys.ec_kid)
            token = jwt.encode(claims, self.keys.ec_key, algorithm="ES256", headers={"kid": kid})
        elif alg == "none":
            header = {"alg": "none", "typ": "JWT", "kid": spec.get("kid", self.keys.current_rsa()[0])}
            token = f"{b64url_json(header)}.{b64url_json(claims)}."
        elif alg == "HS256-with-public-key":
            token = self.hmac_with_public_key(claims, spec.get("kid"))
        else:
            raise ValueError(f"unknown alg {alg!r}")
        if spec.get("tamper"):
            header, _, signature = token.split(".")
            forged = dict(claims, sub="mallory-admin", roles=["admin"])
            token = f"{header}.{b64url_json(forged)}.{signature}"
        return token

    def hmac_with_public_key(self, claims, kid):
        """HS256 keyed with the RSA public key's PEM, naming the RSA key's kid: a verifier
        that lets the token's `alg` pick the algorithm would accept it. PyJWT refuses to build
        this (rightly), so it is assembled by hand."""
        rsa_kid, key = self.keys.current_rsa()
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "typ": "JWT", "kid": kid or rsa_kid}
        signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
        signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"

    def metadata(self):
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "registration_endpoint": f"{self.url}/register",
            "jwks_uri": f"{self.url}/jwks.json",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["mcp"],
        }

    def register(self, request):
        client_id = f"client-{secrets.token_hex(6)}"
        registered = dict(request)
        registered.update(
            {
                "client_id": client_id,
                "client_id_issued_at": int(time.time()),
                "token_endpoint_auth_method": "none",
            }
        )
        registered.pop("client_secret", None)
        with self.lock:
            self.clients[client_id] = registered
        return registered

    def authorize(self, query):
        """The redirect target for an authorization request, or an error message."""
        client_id = query.get("client_id", "")
        with self.lock:
            client = self.clients.get(client_id)
        if client is None:
            return None, f"unknown client_id {client_id!r}"
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in client.get("redirect_uris", []):
            return None, f"redirect_uri {redirect_uri!r} was not registered"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return None, "PKCE with S256 is required"
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = {
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "challenge": query["code_challenge"],
                "resource": query.get("resource"),
                "scope": query.get("scope") or "mcp",
            }
        answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return f"{redirect_uri}{separator}{urlencode(answer)}", None

    def token(self, form):
        """A token response for an authorization code, or an OAuth error object."""
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or grant["client_id"] != form.get("client_id"):
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        verifier = form.get("code_verifier", "")
        if b64url(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier mismatch"}
        resource = form.get("resource") or grant["resource"]
        if not resource:
            return 400, {"error": "invalid_target", "error_description": "a resource is required"}
        spec = {
            "sub": self.options.oauth_sub,
            "roles": self.options.oauth_roles,
            "scope": grant["scope"],
            "aud": resource,
        }
        token = self.mint(spec)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": grant["scope"]}


def handler_for(issuer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):
            sys.stderr.write("auth_issuer: " + (format % args) + "\n")

        def answer(self, status, body, headers=None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise ValueError(f"body of {length} bytes is over {MAX_BODY_BYTES}")
            return self.rfile.read(length) if length else b""

        def do_GET(self):
            url = urlparse(self.path)
            issuer.record("GET", url.path)
            if url.path == "/jwks.json":
                issuer.count_jwks_fetch()
                self.answer(200, issuer.keys.jwks())
            elif url.path == "/attacker-jwks.json":
                issuer.count_attacker_jwks_fetch()
                self.answer(200, issuer.keys.attacker_jwks())
            elif url.path == "/stats":
                self.answer(200, issuer.stats())
            elif url.path == "/.well-known/oauth-authorization-server":
                self.answer(200, issuer.metadata())
            elif url.path == "/authorize":
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                location, error = issuer.authorize(query)
                if error:
                    self.answer(400, {"error": "invalid_request", "error_description": error})
                else:
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
            else:
                self.answer(404, {"error": f"no route {url.path}"})

        def do_POST(self):
            url = urlparse(self.path)
            issuer.record("POST", url.path)
            try:
                body = self.body()
                if url.path == "/mint":
                    self.answer(200, {"token": issuer.mint(json.loads(body or b"{}"))})
                elif url.path == "/rotate":
                    self.answer(200, {"kid": issuer.keys.add_rsa()})
                elif url.path == "/register":
                    self.answer(201, issuer.register(json.loads(body or b"{}")))
                elif url.path == "/token":
                    form = {name: values[0] for name, values in parse_qs(body.decode()).items()}
                    status, answer = issuer.token(form)
                    self.answer(status, answer)
                else:
                    self.answer(404, {"error": f"no route {url.path}"})
            except (ValueError, KeyError) as error:
                self.answer(400, {"error": "invalid_request", "error_description": str(error)})

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audience", help="the default aud of minted tokens")
    parser.add_argument("--oauth-sub", default="oauth-user", help="the subject /token issues tokens for")
    parser.add_argument("--oauth-roles", nargs="*", default=[], help="the roles of /token's tokens")
    parser.add_argument(
        "--tls-dir",
        help="serve https with a certificate for 127.0.0.1 from a CA made for this run, "
        "written to TLS_DIR/ca.pem (what a client must trust)",
    )
    options = parser.parse_args()
    issuer = Issuer(options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(issuer))
    server.daemon_threads = True
    port = server.server_address[1]
    scheme = "http"
    if options.tls_dir:
        server.socket = tls_context(options.tls_dir).wrap_socket(server.socket, server_side=True)
        scheme = "https"
    issuer.url = f"{scheme}://127.0.0.1:{port}"
    print(port, flush=True)
    server.serve_forever()


def tls_context(directory):
    """A server TLS context with a certificate for 127.0.0.1 signed by a CA made for this
    run; the CA's certificate is written to DIRECTORY/ca.pem."""
    import datetime
    import ipaddress
    import os
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-bridge test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(os.path.join(directory, "ca.pem"), "wb") as out:
        out.write(ca.public_bytes(pem))
    leaf_path = os.path.join(directory, "leaf.pem")
    with open(leaf_path, "wb") as out:
        out.write(leaf.public_bytes(pem))
        out.write(
            leaf_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf_path)
    return context


if __name__ == "__main__":
    main()
