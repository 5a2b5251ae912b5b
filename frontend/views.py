"""Web pages. The annotator and researcher UI arrive with the web UI issue; this is the landing page."""
from django.shortcuts import render


def home(request):
    return render(request, "frontend/home.html")
