"""The services this server offers (`catalogue`): each an id, the provider that renders it,
and what it takes and costs."""
