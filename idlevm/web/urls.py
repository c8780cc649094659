"""The console's pages; each section's views live in idlevm/web/views/<section>.py."""

from django.urls import path

from idlevm.web.views import actions, errors, hosts, overview, rules, vms

app_name = "web"
urlpatterns = [
    path("", overview.overview, name="overview"),
    path("hosts/", hosts.host_list, name="hosts"),
    path("hosts/<int:host_id>/", hosts.host_detail, name="host"),
    path("vms/", vms.vm_list, name="vms"),
    path("vms/<int:vm_id>/", vms.vm_detail, name="vm"),
    path("vms/<int:vm_id>/chart.svg", vms.vm_chart, name="vm_chart"),
    path("errors/", errors.error_list, name="errors"),
    path("errors/<int:error_id>/", errors.error_detail, name="error"),
    path("errors/<int:error_id>/clear/", errors.error_clear, name="error_clear"),
    path("errors/<int:error_id>/reopen/", errors.error_reopen, name="error_reopen"),
    path("actions/", actions.action_list, name="actions"),
    path("actions.csv", actions.action_csv, name="actions_csv"),
    path("rules/", rules.rule_list, name="rules"),
    path("rules/new/", rules.rule_create, name="rule_new"),
    path("rules/reference/", rules.reference, name="rules_reference"),
    path("rules/<int:rule_id>/", rules.rule_edit, name="rule"),
    path("rules/<int:rule_id>/delete/", rules.rule_delete, name="rule_delete"),
    path("rules/<int:rule_id>/history/", rules.rule_history, name="rule_history"),
]
