# nginx sources this file when it writes objs/Makefile (auto/make), once
# per addon directory: the rules that turn the module's Lua scripts into
# the headers named in config's ngx_checkout_deps.

ngx_checkout_lua="$NGX_OBJS/addon/ngx_checkout_lua"

for ngx_checkout_script in gate publish; do
    ngx_checkout_prefix=NGX_HTTP_CHECKOUT_`echo $ngx_checkout_script \
                                           | tr a-z A-Z`
    ngx_checkout_src=$ngx_addon_dir/ngx_checkout_module/lua
    ngx_checkout_src=$ngx_checkout_src/$ngx_checkout_script.lua
    ngx_checkout_h=$ngx_checkout_lua/ngx_http_checkout_${ngx_checkout_script}
    ngx_checkout_h=${ngx_checkout_h}_lua.h

    cat << END                                            >> $NGX_MAKEFILE

$ngx_checkout_h:	$ngx_checkout_src \\
		$ngx_addon_dir/contract/lua2c.awk
	mkdir -p $ngx_checkout_lua
	awk -v prefix=$ngx_checkout_prefix \\
		-f $ngx_addon_dir/contract/lua2c.awk \\
		$ngx_checkout_src > $ngx_checkout_h.tmp
	mv -f $ngx_checkout_h.tmp $ngx_checkout_h

END
done
