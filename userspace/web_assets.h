/* web_assets.h - the status page's files (web/index.html, app.js, style.css),
 * embedded into the binary at build time (build/web_assets.inc, generated
 * by the Makefile with xxd -i). Nothing is loaded from disk or elsewhere. */
#ifndef TLSGATE_WEB_ASSETS_H
#define TLSGATE_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
	const char *path;         /* URL path, e.g. "/app.js" */
	const char *content_type;
	const unsigned char *data;
	size_t len;
};

/* The asset served at path ("/" is the page), or NULL. Static data. */
const struct web_asset *web_asset_find(const char *path);

#endif
