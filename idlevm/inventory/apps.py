from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "idlevm.inventory"
    label = "inventory"
    verbose_name = "Inventory"
