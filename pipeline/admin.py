from django.contrib import admin

from pipeline.models import Pipeline, PipelineEvent, Step


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    fields = ("order_no", "name", "queue", "status", "attempts", "started_at", "finished_at", "context")
    readonly_fields = ("status", "attempts", "started_at", "finished_at")
    ordering = ("order_no",)


class EventInline(admin.TabularInline):
    model = PipelineEvent
    extra = 0
    fields = ("created_at", "level", "event", "message")
    readonly_fields = fields
    can_delete = False


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "project", "status", "created_at", "finished_at")
    list_filter = ("status", "project")
    search_fields = ("name", "project")
    readonly_fields = ("created_at", "started_at", "finished_at", "published_at", "claimed_by")
    inlines = [StepInline, EventInline]


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = ("id", "pipeline", "order_no", "name", "status", "attempts")
    list_filter = ("status", "name")
