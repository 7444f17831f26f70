"""Fixtures of the include/ tests: moto's server for the CloudFormation deploy."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared fakes

from fakes import aws as fake_aws

moto_endpoint = fake_aws.moto_endpoint
aws_env = fake_aws.aws_env
