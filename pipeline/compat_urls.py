from django.urls import path

from pipeline import compat_views

urlpatterns = [
    path("pipe_create", compat_views.PipeCreateApi.as_view(), name="compat-pipe-create"),
    path("pipe_list", compat_views.PipeListApi.as_view(), name="compat-pipe-list"),
    path("trans_list", compat_views.TransListApi.as_view(), name="compat-trans-list"),
    path("pipeline_filter", compat_views.PipelineFilterApi.as_view(), name="compat-pipeline-filter"),
]
