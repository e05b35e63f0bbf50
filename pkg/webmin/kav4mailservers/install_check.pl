# install_check.pl: whether kav4mailservers is installed (Webmin hides modules whose product is not).
use strict;
use warnings;
our (%config);
do './kav4mailservers-lib.pl';

# is_installed(mode): 0 not installed, 1 installed (2 would mean installed and configured)
sub is_installed {
    my ($mode) = @_;
    return 0 if (!&kavconsole_installed());
    return -r $config{'config_file'} ? 2 : 1;
}

1;
