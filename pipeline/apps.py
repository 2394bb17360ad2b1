from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "Pipelines"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from pipeline import handoff

        def forget_broker_connection(setting: str, **kwargs: object) -> None:
            if setting.startswith("SHEPHERD_"):
                handoff.drop_connection()

        setting_changed.connect(forget_broker_connection, weak=False)
