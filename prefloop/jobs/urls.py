from django.urls import path

from prefloop.jobs import api

urlpatterns = [
    path("", api.JobListApi.as_view(), name="job-list"),
    path("<int:job_id>/", api.JobDetailApi.as_view(), name="job-detail"),
    path("<int:job_id>/cancel/", api.JobCancelApi.as_view(), name="job-cancel"),
]
