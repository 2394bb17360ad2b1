from django.urls import path

from pipeline import views

urlpatterns = [
    path("pipelines/", views.PipelineListCreateApi.as_view(), name="pipeline-list"),
    path("pipelines/<int:pipeline_id>/", views.PipelineDetailApi.as_view(), name="pipeline-detail"),
    path("pipelines/<int:pipeline_id>/cancel/", views.PipelineCancelApi.as_view(), name="pipeline-cancel"),
    path("pipelines/<int:pipeline_id>/retry/", views.PipelineRetryApi.as_view(), name="pipeline-retry"),
    path("pipelines/<int:pipeline_id>/logs/", views.PipelineLogsApi.as_view(), name="pipeline-logs"),
    path("projects/", views.ProjectListApi.as_view(), name="project-list"),
    path("workers/", views.WorkerStatusApi.as_view(), name="worker-status"),
    path("health/", views.HealthApi.as_view(), name="health"),
]
