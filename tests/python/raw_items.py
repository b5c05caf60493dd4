"""Reads what the AWS adapters stored, with boto3 (a client no one here wrote), and fails
if any PHI value appears in the clear: every attribute of every item of both tables
(strings, numbers, binary values, nested lists and maps) and every message body on the
notification queue.

usage: raw_items.py ENDPOINT TABLE AUDIT_TABLE QUEUE_URL PLAINTEXT...
"""

import sys

import boto3

endpoint, table, audit_table, queue_url, *plaintexts = sys.argv[1:]
session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
dynamodb = session.client("dynamodb", endpoint_url=endpoint)
sqs = session.client("sqs", endpoint_url=endpoint)


def blobs(value):
    """Every leaf of a low-level attribute value, as bytes."""
    for kind, inner in value.items():
        if kind in ("S", "N"):
            yield inner.encode()
        elif kind == "B":
            yield bytes(inner)
        elif kind in ("SS", "NS"):
            yield from (v.encode() for v in inner)
        elif kind == "BS":
            yield from (bytes(v) for v in inner)
        elif kind == "L":
            for v in inner:
                yield from blobs(v)
        elif kind == "M":
            for v in inner.values():
                yield from blobs(v)


def scan(name):
    items, start = [], None
    while True:
        page = dynamodb.scan(TableName=name, **({"ExclusiveStartKey": start} if start else {}))
        items.extend(page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


leaks = []
counts = {}
for name in (table, audit_table):
    items = scan(name)
    counts[name] = len(items)
    for item in items:
        for attribute, value in item.items():
            for blob in blobs(value):
                for plain in plaintexts:
                    if plain.encode() in blob:
                        leaks.append(f"{name} {item['pk']['S']}/{item['sk']['S']} {attribute}: {plain!r}")

messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
for message in messages:
    for plain in plaintexts:
        if plain in message["Body"]:
            leaks.append(f"queue message: {plain!r}")

assert counts[table] > 10, counts
assert counts[audit_table] > 0, counts
assert messages, "the notifications were queued"
assert not leaks, "PHI in the clear:\n" + "\n".join(leaks)
print(f"raw items: {counts}, {len(messages)} queue messages, no plaintext")
