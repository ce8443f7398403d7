"""The browser/WebXR substation viewer: static page, model-viewer from npm, served locally."""

from inspection.viewer.server import ViewerMissing, ViewerServer, ensure_viewer, viewer_url

__all__ = ["ViewerMissing", "ViewerServer", "ensure_viewer", "viewer_url"]
