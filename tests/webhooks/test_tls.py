"""HTTPS: the connection goes to the checked address while SNI and the certificate check use the URL's name."""

from __future__ import annotations

import datetime
import ipaddress
import ssl

import pytest

from prefloop.webhooks import net

x509 = pytest.importorskip("cryptography.x509")


def self_signed(tmp_path, name: str):
    """A certificate for `name` only (no IP in it), and a client context that trusts just that one."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def rules(client_context: ssl.SSLContext) -> net.Rules:
    return net.Rules(
        allowed_networks=net.parse_networks(["127.0.0.1/32", "::1/128"]), timeout=5, ssl_context=client_context
    )


def test_https_sends_the_url_host_as_sni_and_verifies_the_certificate_for_it(tmp_path, receiver):
    server, client = self_signed(tmp_path, "localhost")
    seen: list[str | None] = []
    server.sni_callback = lambda sock, name, ctx: seen.append(name)
    r = receiver(tls=server)
    answer = net.post(r.url(host="localhost"), b"{}", {"Content-Type": "application/json"}, rules(client))
    assert answer.status == 200 and seen == ["localhost"]
    assert r.received[0].headers["host"] == f"localhost:{r.port}"
    assert ipaddress.ip_address(net.resolve(net.parse_target(r.url(host="localhost")), rules(client))).is_loopback


def test_a_certificate_for_another_name_is_refused(tmp_path, receiver):
    server, client = self_signed(tmp_path, "hooks.example.org")
    r = receiver(tls=server)
    with pytest.raises(net.DeliveryError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        net.post(r.url(host="localhost"), b"{}", {}, rules(client))
    assert r.received == []
