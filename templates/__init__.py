"""leadbot's built-in Jinja templates (installed as the package data `bot.templates`)."""
