"""The only code that imports bpy: builds the animal scene once per worker and renders it."""
