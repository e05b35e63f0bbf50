# kav4mailservers-lib.pl: common functions of the kav4mailservers Webmin module (guide 4.3).
# The module is a thin door to kavconsole, the product's own web console; it stores nothing itself.
use strict;
use warnings;
our (%config, %text, %access, $module_name);

BEGIN { push(@INC, ".."); }
eval "use WebminCore;";    ## no critic: WebminCore exists only inside Webmin
if (defined(&init_config)) {
    &init_config();
    %access = &get_module_acl();
}

# console_url(): the configured console address, reduced to http(s)://host:port/ so that nothing
# from the configuration can inject markup or a javascript: URL into the page.
sub console_url {
    my $url = $config{'console_url'} || 'http://127.0.0.1:10180/';
    return $url =~ m{^(https?://[A-Za-z0-9.\-\[\]:]+/?)} ? $1 : 'http://127.0.0.1:10180/';
}

# kavconsole_installed(): whether the console program is there.
sub kavconsole_installed {
    my $prog = $config{'kavconsole'} || '/usr/sbin/kavconsole';
    return -x $prog ? 1 : 0;
}

1;
