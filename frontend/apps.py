from django.apps import AppConfig


class FrontendConfig(AppConfig):
    name = "frontend"

    def ready(self):
        from annotate.signals import vote_recorded
        from frontend.live import broadcast_vote

        vote_recorded.connect(broadcast_vote, dispatch_uid="frontend-broadcast-vote")
