"""Asterisk configuration rendered from the project's one source of truth.

``render`` turns the settings (``dasan.yaml``) and ``queues/*.yaml`` into pjsip.conf,
manager.conf, queues.conf, queuerules.conf, musiconhold.conf, modules.conf, CDR/CEL settings
and the dialplan; ``apply`` writes them into Asterisk's directory and reloads the changed
modules over AMI; ``cli`` adds ``dasan asterisk render|apply``. The templates are package
data in ``templates/`` and ``dialplan/`` beside this file (see docs/asterisk.md).
"""
