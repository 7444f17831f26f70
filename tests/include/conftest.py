"""Fixtures of the include/ tests: moto's server for the CloudFormation deploy."""

from __future__ import annotations

from tests.fakes import aws as fake_aws

moto_endpoint = fake_aws.moto_endpoint
aws_env = fake_aws.aws_env
