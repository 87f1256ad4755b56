"""Mints access tokens for the negative token matrix with PyJWT, a library
independent of the service's own, and prints them as one JSON object
{case: token}.

Every case but `valid` must be refused by worker-api; `valid` is the control
that shows the others fail for the reason their name gives.

    python mint_tokens.py --key KEY.pem --kid KID --sub ADMIN_ID \
        --volunteer VOLUNTEER_ID [--iss spotcheck] [--aud spotcheck-api]
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def hs256_by_hand(header: dict, payload: dict, secret: bytes) -> str:
    """HS256 without PyJWT, which refuses a PEM public key as an HMAC secret."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def load_ed25519(pem: bytes) -> Ed25519PrivateKey:
    """The key from PKCS#8 PEM, v1 (as openssl writes it) or v2 (with the public
    key appended, as some libraries write it and cryptography may refuse)."""
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except ValueError:
        der = base64.b64decode(b"".join(l for l in pem.splitlines() if not l.startswith(b"-----")))
        # The seed is the OCTET STRING inside the privateKey OCTET STRING: 04 22 04 20 <32 bytes>.
        at = der.index(bytes([0x04, 0x22, 0x04, 0x20])) + 4
        return Ed25519PrivateKey.from_private_bytes(der[at : at + 32])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--key", required=True, help="the service's Ed25519 private key (PEM)")
    parser.add_argument("--kid", required=True, help="the key id the service publishes")
    parser.add_argument("--sub", required=True, help="an admin's user id")
    parser.add_argument("--volunteer", required=True, help="a volunteer's user id")
    parser.add_argument("--iss", default="spotcheck")
    parser.add_argument("--aud", default="spotcheck-api")
    args = parser.parse_args()

    with open(args.key, "rb") as f:
        key = load_ed25519(f.read())
    public = key.public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    now = int(time.time())

    def claims(**changes) -> dict:
        base = {
            "sub": args.sub,
            "role": "admin",
            "iss": args.iss,
            "aud": args.aud,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
        }
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    def eddsa(payload: dict, signing_key=key, kid=args.kid) -> str:
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode(payload, signing_key, algorithm="EdDSA", headers=headers)

    valid = eddsa(claims())
    header, _, signature = valid.split(".")
    tampered_payload = f"{header}.{segment(claims(exp=now + 365 * 86400))}.{signature}"

    tokens = {
        "valid": valid,
        "alg_none": jwt.encode(claims(), None, algorithm="none", headers={"kid": args.kid}),
        "hs256_public_key_pem_as_secret": hs256_by_hand(
            {"alg": "HS256", "typ": "JWT", "kid": args.kid}, claims(), public_pem
        ),
        "hs256_public_key_bytes_as_secret": jwt.encode(
            claims(), public_raw, algorithm="HS256", headers={"kid": args.kid}
        ),
        "es256_other_algorithm": jwt.encode(
            claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
            headers={"kid": args.kid},
        ),
        "wrong_key": eddsa(claims(), signing_key=Ed25519PrivateKey.generate()),
        "tampered_payload": tampered_payload,
        "expired": eddsa(claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600)),
        "not_yet_valid": eddsa(claims(nbf=now + 3600, exp=now + 7200)),
        "wrong_issuer": eddsa(claims(iss="someone-else")),
        "wrong_audience": eddsa(claims(aud="another-api")),
        "unknown_kid": eddsa(claims(), kid="no-such-key"),
        "no_kid": eddsa(claims(), kid=None),
        "exp_as_string": eddsa(claims(exp=str(now + 600))),
        "nbf_as_string": eddsa(claims(nbf=str(now))),
        "no_sub": eddsa(claims(sub=None)),
        "no_exp": eddsa(claims(exp=None)),
        "sub_not_a_user_id": eddsa(claims(sub="admin")),
        # Signed with the right key: the role claim must still grant nothing.
        "role_raised": eddsa(claims(sub=args.volunteer, role="admin")),
    }
    json.dump(tokens, sys.stdout)


if __name__ == "__main__":
    main()
