from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "idlevm.web"
    label = "web"
    verbose_name = "Operators' console"
