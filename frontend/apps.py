from django.apps import AppConfig


class FrontendConfig(AppConfig):
    name = "frontend"

    def ready(self):
        from annotate.signals import vote_recorded
        from frontend.live import broadcast_vote

        vote_recorded.connect(broadcast_vote, dispatch_uid="frontend-broadcast-vote")

        from annotate.vote_next import NEXT_RENDERERS
        from frontend.next_fragment import queue_item_html

        NEXT_RENDERERS["html"] = queue_item_html  # vote?next=html: the page's next fragment
