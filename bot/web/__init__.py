"""The web console inside `leadbot run`: the overview and each lead's page (behind a login),
claim links for people who are not on Slack, /healthz and /metrics. A front door to the store,
beside the pipeline: see app.py."""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
