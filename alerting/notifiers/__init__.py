"""Notification integrations, one module each, named as in Alertmanager's receiver configuration:
``webhook`` (``webhook_configs``), ``slack`` (``slack_configs``) and ``email`` (``email_configs``).

Every integration has ``integration`` (its kind), ``index`` (its position in the receiver's list of that
kind), ``send_resolved``, ``async send(payload)`` and ``preview(payload) -> str`` (what ``send`` would
put on the wire, for ``opswatch template render``). ``send`` raises :class:`~.base.NotifyError`.
"""
