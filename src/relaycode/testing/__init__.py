"""Test doubles shipped with relay: scripted models, a fake OpenAI-compatible server, sample repos,
and fakes of the run loop's seams (`loop`: a checkout without git, a scripted verifier and implementer).

Use them in your own tests of relay configs and plugins, as relay's suite does.
"""
