from django.urls import path

from idlevm.web import views

app_name = "web"
urlpatterns = [
    path("", views.overview, name="overview"),
]
