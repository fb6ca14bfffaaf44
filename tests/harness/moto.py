"""A moto server: the real DynamoDB API (regions kept apart by the SigV4 credential scope)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import boto3

from . import procs

TABLE_KEY = "item_id"


def start_moto() -> procs.Proc:
    """Starts `moto_server` from this Python environment on a free loopback port."""
    port = procs.free_port()
    moto_bin = Path(sys.executable).with_name("moto_server")
    proc = procs.start(f"moto-{port}", [str(moto_bin), "-H", "127.0.0.1", "-p", str(port)], port=port)
    procs.wait_http(proc, "/moto-api/", timeout=30)
    return proc


def client(endpoint: str, region: str):
    """A boto3 DynamoDB client for one region of the local server."""
    return boto3.client(
        "dynamodb", endpoint_url=endpoint, region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    )


def streams_client(endpoint: str, region: str):
    return boto3.client(
        "dynamodbstreams", endpoint_url=endpoint, region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    )


def create_table(endpoint: str, region: str, table: str) -> None:
    """Creates the items table (key `item_id`, on-demand, streams with both images) in a region."""
    c = client(endpoint, region)
    c.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": TABLE_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": TABLE_KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    c.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
