# acl_security.pl: Webmin ACL of the module: who may open the console from Webmin.
use strict;
use warnings;
our (%text);
require './kav4mailservers-lib.pl';

# acl_security_form(&acl): the ACL fields of a Webmin user
sub acl_security_form {
    my ($o) = @_;
    print &ui_table_row($text{'acl_open'}, &ui_yesno_radio("open", $o->{'open'} ? 1 : 0));
}

# acl_security_save(&acl, &in): store them
sub acl_security_save {
    my ($o, $in) = @_;
    $o->{'open'} = $in->{'open'} ? 1 : 0;
}

1;
