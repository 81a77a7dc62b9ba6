"""Test doubles shipped with relay: scripted models, a fake OpenAI-compatible server, sample repos.

Use them in your own tests of relay configs and plugins, as relay's suite does.
"""
