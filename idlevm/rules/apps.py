from django.apps import AppConfig


class RulesConfig(AppConfig):
    name = "idlevm.rules"
    label = "rules"
    verbose_name = "Rules and actions"
