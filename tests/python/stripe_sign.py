"""Signs and verifies Stripe webhook payloads with the official `stripe` library.

    stripe_sign.py sign SECRET TIMESTAMP   < payload   -> prints the Stripe-Signature header
    stripe_sign.py verify SECRET HEADER    < payload   -> exit 0 when the library accepts it

Verification is without a time tolerance (the tests run on a manual clock); the
tolerance is the Rust side's to enforce and is tested there.
"""
import sys

import stripe

mode, secret, arg = sys.argv[1], sys.argv[2], sys.argv[3]
payload = sys.stdin.buffer.read().decode("utf-8")
if mode == "sign":
    print(stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=int(arg)))
elif mode == "verify":
    try:
        stripe.WebhookSignature.verify_header(payload, arg, secret, tolerance=None)
    except stripe.SignatureVerificationError as err:
        print(f"refused: {err}", file=sys.stderr)
        sys.exit(1)
else:
    sys.exit(f"unknown mode {mode}")
