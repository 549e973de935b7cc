#!/usr/bin/env python3
"""Posts one signed event to a dsm webhook source, as a provider would.

Usage: WEBHOOK_SECRET=... python3 send.py URL EVENT_ID JSON
The signature is `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` with the source's
secret; the timestamp is the current unix time.
"""
import hashlib
import hmac
import os
import sys
import time
import urllib.error
import urllib.request

url, event_id, body = sys.argv[1], sys.argv[2], sys.argv[3].encode()
secret = os.environ["WEBHOOK_SECRET"].encode()
timestamp = str(int(time.time()))
signature = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
request = urllib.request.Request(url, data=body, method="POST", headers={
    "Content-Type": "application/json",
    "X-DSM-Timestamp": timestamp,
    "X-DSM-Signature": "sha256=" + signature,
    "X-DSM-Event-Id": event_id,
})
try:
    with urllib.request.urlopen(request) as answer:
        print(answer.status, answer.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
    sys.exit(1)
