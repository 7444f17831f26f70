"""The Claude agent that makes a job's change in one checkout."""

from codybatch.agent.loop import AgentOutcome, run_agent

__all__ = ["AgentOutcome", "run_agent"]
