/* web_assets.c - see web_assets.h. The arrays come from build/web_assets.inc
 * (xxd -i of web/index.html, web/app.js, web/style.css). */
#include "web_assets.h"

#include <string.h>

#include "web_assets.inc"

static const struct web_asset web_assets[] = {
	{ "/", "text/html; charset=utf-8", web_index_html, sizeof(web_index_html) },
	{ "/index.html", "text/html; charset=utf-8", web_index_html, sizeof(web_index_html) },
	{ "/app.js", "text/javascript; charset=utf-8", web_app_js, sizeof(web_app_js) },
	{ "/style.css", "text/css; charset=utf-8", web_style_css, sizeof(web_style_css) },
};

const struct web_asset *web_asset_find(const char *path)
{
	for (size_t i = 0; i < sizeof(web_assets) / sizeof(web_assets[0]); i++)
		if (!strcmp(web_assets[i].path, path))
			return &web_assets[i];
	return NULL;
}
