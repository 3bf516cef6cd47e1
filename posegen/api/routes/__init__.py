"""One router per resource; `posegen.api.app` mounts them all under the base path."""
