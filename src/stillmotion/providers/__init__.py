"""Renderers behind one interface (`base.Provider`). Each service of the catalogue
(`STILLMOTION_SERVICES`) names its provider kind; `registry.Providers` builds one per service
(`Context.providers`), and the workers render each job with its service's provider."""
